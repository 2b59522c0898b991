"""Where a sweep measured: declared values win, then the helper's whoami, then geoip_db.

The helper is a real ``probe helper serve`` process on 127.0.0.1 with a database of the
tests' own (tests/geoip_files.py); the sweeps are real ``probe run`` commands against the
loopback world, read back with ``probe show --json``. 127.0.0.0/8 is ``routable`` for both
(as the lab's range will be), so the loopback address is one a database may place.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from measurements.geoip import Place
from probe.classify.verdict import Location
from probe.cli import main
from probe.engine.location import choose, hint
from tests.geoip_files import asn_db, country_db
from tests.servers.world import World, free_port, helper_process, running_world

NAMES = ["ref.test"]
HELPER = Place(64500, "Loopback Test Net", "KZ")
LOCAL = Place(64501, "Local Net", "UZ")

CHOICES: list[tuple[str, Location, list[tuple[str, Place]], Location]] = [
    ("nothing", Location(), [], Location(problems=("why",))),
    (
        "declared both",
        Location.declared(9198, "KZ"),
        [("helper", HELPER)],
        Location.declared(9198, "KZ"),
    ),
    (
        "helper first",
        Location(),
        [("helper", HELPER), ("geoip_db", LOCAL)],
        Location(64500, "KZ", "Loopback Test Net", "helper", "helper"),
    ),
    (
        "geoip_db alone",
        Location(),
        [("geoip_db", LOCAL)],
        Location(64501, "UZ", "Local Net", "geoip_db", "geoip_db"),
    ),
    (
        "declared country, detected AS",
        Location.declared(None, "RU"),
        [("helper", HELPER)],
        Location(64500, "RU", "Loopback Test Net", "helper", "declared"),
    ),
    (
        "declared AS named by a database that agrees",
        Location.declared(64500, None),
        [("geoip_db", LOCAL), ("helper", HELPER)],
        Location(64500, "UZ", "Loopback Test Net", "declared", "geoip_db"),
    ),
    (
        "a name of another AS is not taken",
        Location.declared(9198, None),
        [("helper", HELPER)],
        Location(9198, "KZ", None, "declared", "helper"),
    ),
    (
        "mixed sources",
        Location(),
        [("helper", Place(None, None, "KZ")), ("geoip_db", LOCAL)],
        Location(64501, "KZ", "Local Net", "geoip_db", "helper"),
    ),
    (
        "still missing: the reasons stay",
        Location(),
        [("helper", Place(None, None, "KZ"))],
        Location(None, "KZ", None, None, "helper", ("why",)),
    ),
]


@pytest.mark.parametrize(
    ("start", "found", "expected"), [c[1:] for c in CHOICES], ids=[c[0] for c in CHOICES]
)
def test_declared_values_win_then_the_helper_then_geoip_db(
    start: Location, found: list[tuple[str, Place]], expected: Location
) -> None:
    assert choose(start, found, ["why"]) == expected


places = st.builds(
    Place,
    st.none() | st.integers(1, 2**32 - 1),
    st.none() | st.text(max_size=5),
    st.none() | st.sampled_from(["KZ", "UZ"]),
)


@given(
    st.none() | st.integers(1, 99),
    st.none() | st.sampled_from(["RU"]),
    st.lists(st.tuples(st.sampled_from(["helper", "geoip_db"]), places), max_size=3),
)
def test_a_declared_value_is_never_overruled(
    asn: int | None, country: str | None, found: list[tuple[str, Place]]
) -> None:
    got = choose(Location.declared(asn, country), found, [])
    if asn is not None:
        assert (got.asn, got.asn_source) == (asn, "declared")
    if country is not None:
        assert (got.country, got.country_source) == (country, "declared")
    assert (got.asn is None) == (got.asn_source is None)


def test_the_hint_is_given_only_when_nothing_is_known() -> None:
    assert hint(Location.declared(None, "KZ")) is None
    line = hint(Location(problems=("no control helper and no vantage.geoip_db to detect it",)))
    assert (
        line is not None and "location unknown" in line and "--country" in line and "--asn" in line
    )


# ------------------------------------------------------------------ the helper's whoami


@pytest.fixture(scope="module")
def world(ca: trustme.CA, ca_bundle: str) -> Iterator[World]:
    with running_world(ca, ca_bundle, NAMES) as w:
        yield w


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("geoip")
    return asn_db(d / "asn.mmdb"), country_db(d / "country.mmdb")


@pytest.fixture(scope="module")
def helper_url(world: World, databases: tuple[Path, Path]) -> Iterator[str]:
    asn, country = databases
    with helper_process(world, flags=("--asn-db", str(asn), "--country-db", str(country))) as url:
        yield url


def test_whoami_answers_with_the_asn_and_country_and_never_the_address(helper_url: str) -> None:
    answer = httpx.get(f"{helper_url}/v1/whoami", timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {
        "version": 1,
        "asn": 64500,
        "network_name": "Loopback Test Net",
        "country": "KZ",
        "unknown": None,
    }
    assert "127.0.0.1" not in answer.text


def test_whoami_without_a_database_says_it_is_not_configured(world: World) -> None:
    with helper_process(world) as url:
        answer = httpx.get(f"{url}/v1/whoami", timeout=10)
    assert answer.status_code == 501
    assert "no IP-to-ASN database (helper.asn_db, helper.country_db)" in answer.json()["error"]


def test_whoami_needs_the_token_like_every_other_endpoint(
    world: World, databases: tuple[Path, Path], tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n", encoding="utf-8")
    with helper_process(world, token, flags=("--asn-db", str(databases[0]))) as url:
        assert httpx.get(f"{url}/v1/whoami", timeout=10).status_code == 401
        answer = httpx.get(
            f"{url}/v1/whoami", headers={"Authorization": "Bearer s3cret"}, timeout=10
        )
    # An ASN file alone: the country is unknown, and the answer says so.
    assert answer.status_code == 200 and answer.json()["asn"] == 64500
    assert answer.json()["country"] is None and "no country" in answer.json()["unknown"]


def test_a_helper_address_outside_routable_is_not_placed(
    world: World, databases: tuple[Path, Path]
) -> None:
    # Started by hand: without --routable, 127.0.0.1 is loopback, which no database places.
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe", "helper", "serve", "--listen", f"127.0.0.1:{port}", "--asn-db", str(databases[0])],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None and "listening" in proc.stderr.readline()
        answer = httpx.get(f"http://127.0.0.1:{port}/v1/whoami", timeout=10).json()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert (
        answer["asn"] is None
        and answer["unknown"] == "your address is loopback as the helper sees it: not placed"
    )


@pytest.mark.parametrize("flag", ["--asn-db", "--country-db"])
def test_a_bad_helper_database_stops_it_at_start_up_naming_the_file(
    tmp_path: Path, flag: str
) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"\x00" * 4096)
    done = subprocess.run(
        [sys.executable, "-m", "probe", "helper", "serve", "--listen", f"127.0.0.1:{free_port()}", flag, str(bad)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        f"{flag.removeprefix('--').replace('-', '_')}: {bad}: not a MaxMind DB (.mmdb) file"
        in done.stderr
    )
    missing = tmp_path / "absent.mmdb"
    done = subprocess.run(
        [sys.executable, "-m", "probe", "helper", "serve", flag, str(missing)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and str(missing) in done.stderr


# ------------------------------------------------------------------ the sweep's location


def _config(world: World, tmp_path: Path, *, declared: bool = False, extra: str = "") -> Path:
    """The world's config, with the declared asn and country only when asked."""
    path = world.write_config(tmp_path / "probe.toml", f"http://ref.test:{world.web.http_port}/")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not declared:
        lines = [line for line in lines if not line.startswith(("country =", "asn ="))]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def _sweep(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *flags: str,
    declared: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """One ``probe run --json``: its output, the run as ``probe show`` reads it, and stderr."""
    targets = tmp_path / "targets.toml"
    targets.write_text(
        f'[[service]]\nname = "ok"\ncategory = "social"\nurls = ["http://ref.test:{world.web.http_port}/"]\n',
        encoding="utf-8",
    )
    db = tmp_path / "results.sqlite"
    config = _config(world, tmp_path, declared=declared)
    args = [
        "run",
        "--config",
        str(config),
        "--targets",
        str(targets),
        "--db",
        str(db),
        "--json",
        "--no-progress",
    ]
    capsys.readouterr()
    assert main([*args, *flags]) == 0
    out, err = capsys.readouterr()
    ran = json.loads(out)
    assert main(["show", ran["run_id"][:8], "--db", str(db), "--json"]) == 0
    return ran, json.loads(capsys.readouterr().out), err


def test_a_sweep_takes_its_location_from_the_helper(
    world: World, helper_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran, shown, err = _sweep(world, tmp_path, capsys, "--helper", helper_url)
    expected = {
        "asn": 64500,
        "country": "KZ",
        "network_name": "Loopback Test Net",
        "asn_source": "helper",
        "country_source": "helper",
        "note": None,
    }
    assert ran["location"] == expected and shown["location"] == expected
    assert (shown["vantage"]["asn"], shown["vantage"]["country"]) == (64500, "KZ")
    assert "location unknown" not in err


def test_a_sweep_looks_up_its_own_address_in_geoip_db(
    world: World, databases: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asn, country = databases
    _, shown, _ = _sweep(
        world, tmp_path, capsys, "--geoip-db", str(asn), "--geoip-db", str(country)
    )
    assert shown["location"] == {
        "asn": 64500,
        "country": "KZ",
        "network_name": "Loopback Test Net",
        "asn_source": "geoip_db",
        "country_source": "geoip_db",
        "note": None,
    }
    # The run keeps the files' names, never their directory (often the volunteer's home).
    with contextlib.closing(sqlite3.connect(tmp_path / "results.sqlite")) as raw:
        (settings,) = raw.execute("SELECT settings FROM runs").fetchone()
    assert json.loads(settings)["vantage.geoip_db"] == ["asn.mmdb", "country.mmdb"]


def test_declared_values_win_over_the_helper(
    world: World, helper_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, shown, _ = _sweep(world, tmp_path, capsys, "--helper", helper_url, "--country", "UZ")
    assert shown["location"] == {
        "asn": 64500,
        "country": "UZ",
        "network_name": "Loopback Test Net",
        "asn_source": "helper",
        "country_source": "declared",
        "note": None,
    }
    (tmp_path / "both").mkdir()
    _, shown, _ = _sweep(world, tmp_path / "both", capsys, "--helper", helper_url, declared=True)
    assert shown["location"]["asn_source"] == shown["location"]["country_source"] == "declared"
    assert (shown["location"]["asn"], shown["location"]["network_name"]) == (64500, None)


def test_without_helper_or_database_the_run_says_location_unknown(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran, shown, err = _sweep(world, tmp_path, capsys)
    assert shown["location"]["asn"] is None and shown["location"]["country"] is None
    assert shown["location"]["note"] == "no control helper and no vantage.geoip_db to detect it"
    assert err.count("location unknown") == 1 and "--country" in err and "--asn" in err
    assert "location unknown" not in json.dumps(ran)  # a hint for people, not in the JSON


def test_a_helper_without_a_database_leaves_the_reason_in_the_run(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with helper_process(world) as url:
        _, shown, err = _sweep(world, tmp_path, capsys, "--helper", url)
    assert shown["location"]["asn"] is None and "location unknown" in err
    assert "the helper refused (501)" in shown["location"]["note"]


@pytest.mark.parametrize("content", [None, b"\x00" * 4096])
def test_a_bad_geoip_db_is_bad_usage_naming_the_file(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None
) -> None:
    bad = tmp_path / "bad.mmdb"
    if content is not None:
        bad.write_bytes(content)
    config = _config(world, tmp_path)
    db = tmp_path / "results.sqlite"
    capsys.readouterr()
    assert (
        main(
            [
                "run",
                "--config",
                str(config),
                "--db",
                str(db),
                "--geoip-db",
                str(bad),
                "--no-progress",
            ]
        )
        == 2
    )
    assert str(bad) in capsys.readouterr().err
    assert not db.exists()  # nothing half-written
