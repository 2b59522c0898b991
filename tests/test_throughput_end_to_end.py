"""Rule 7 end to end: ``probe run`` against a loopback world with a policer in the path.

The resource is a ByteServer on 127.0.0.1; a Pacer in front of it slows what the server sends
by SNI, for every connection, or after the first N bytes, as tc and iptables do in the lab.
Each scenario is its own small sweep (small budgets, 20 ms samples) so each stays within a
few seconds; expectations are read back from ``probe export`` and ``probe show``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from probe.cli import main
from tests.readback import export_rows, shown_evidence
from tests.servers.sweeps import run_sweep, service_lines
from tests.servers.throughput_server import ByteServer, Pacer
from tests.servers.world import World, helper_process, running_world

NAMES = ["ref.test", "sni.test", "ip.test", "slow.test", "late.test", "fast.test", "a.test",
         "b.test"]  # fmt: skip
RATE = 100_000  # bytes/s through a pacer: 800 kbit/s
PER_TRANSFER = 300_000
SIZE = 4_000_000
TRANSFER_SECONDS = 0.4
THROUGHPUT = {
    "max_bytes_per_test": 9 * PER_TRANSFER,
    "max_seconds_per_test": 9 * TRANSFER_SECONDS,
    "sample_interval": 0.02,
}


@pytest.fixture(scope="module")
def world(ca: trustme.CA, ca_bundle: str) -> Iterator[World]:
    with running_world(ca, ca_bundle, NAMES) as w:
        yield w


@pytest.fixture(scope="module")
def origin(world: World, ca: trustme.CA) -> ByteServer:
    return world.peer(ByteServer(ca, NAMES))


def _sweep(
    world: World,
    origin: ByteServer,
    tmp: Path,
    services: dict[str, str],
    *,
    reference: str | None = None,
    flags: tuple[str, ...] = (),
    **throughput: Any,
) -> tuple[int, Path]:
    """One sweep: each service's one URL is its throughput URL. Returns (exit, db)."""
    lines = [line for name, url in services.items() for line in service_lines(name, [url], url)]
    settings = {**THROUGHPUT, **throughput}
    settings.setdefault("reference", [reference or f"https://ref.test:{origin.port}/bytes/{SIZE}"])
    # The vantage check's reference is direct and fast; the one timed is ``reference``.
    vantage = f"https://ref.test:{origin.port}/bytes/1000"
    return run_sweep(world, tmp, lines, vantage, settings, flags)


def _rows(db: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    return export_rows(db, capsys, "service")


def _evidence(db: Path, row: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> Any:
    return shown_evidence(db, row, capsys)


def _url(port: int, name: str) -> str:
    return f"https://{name}:{port}/bytes/{SIZE}"


def _near_rate(kbps: float | None) -> bool:
    return kbps is not None and 0.6 * RATE * 8 / 1000 <= kbps <= 1.3 * RATE * 8 / 1000


def test_sni_throttle(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pacer = world.peer(Pacer(origin.port, rate=RATE, names={"sni.test"}))
    code, db = _sweep(world, origin, tmp_path, {"sni": _url(pacer.port, "sni.test")})
    assert code == 0
    row = _rows(db, capsys)["sni"]
    assert (row["verdict"], row["layer"], row["detail"]) == ("throttled", "tls", "throttle.sni")
    assert _near_rate(row["throughput_kbps"])
    assert row["baseline_kbps"] > 10 * row["throughput_kbps"]
    evidence = _evidence(db, row, capsys)
    facts = evidence["verdict_evidence"]["throughput"]
    assert facts["vs_innocuous"]["slower"] and facts["vs_reference"]["slower"]
    assert facts["vs_innocuous"]["ks_p"] < 0.01 and facts["change_at_bytes"] is None
    # Interleaved: 3 trials of each kind; the innocuous ones named another SNI, unverified.
    controls = evidence["verdict_evidence"]["controls"]
    innocuous = controls["throughput_innocuous"]
    assert len(innocuous) == 3 and len(controls["throughput_reference"]) == 3
    assert all(o["sni"] == "www.example.com" and o["verified"] is False for o in innocuous)
    target = [o for o in evidence["observations"] if o["kind"] == "ThroughputObservation"]
    assert len(target) == 3 and all(o["stopped"] == "seconds" for o in target)
    assert evidence["verdict_evidence"]["throughput_bytes"] <= THROUGHPUT["max_bytes_per_test"]
    lines = {c["name"]: c for c in evidence["verdict_evidence"]["control_status"]}
    assert lines["throughput_innocuous"]["outcome"] == "answered"
    assert lines["throughput_reference"]["outcome"] == "answered"
    assert lines["throughput_helper"]["outcome"] == "not_configured"
    # The censor paced the target's connections and let the innocuous SNI's through.
    assert sum(c.paced for c in pacer.connections) >= 3 + 1  # trials, and the ordinary GET
    assert not any(c.paced for c in pacer.connections if b"www.example.com" in c.hello)
    # The ordinary GET asked for its 16 KiB only: nothing more queued behind the policer.
    assert f"bytes=0-{16 * 1024 - 1}" in origin.ranges


def test_ip_throttle_needs_the_address_fast_elsewhere_or_before(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every connection to the address slowed (every SNI, the innocuous one too), no helper,
    # no history: a server slow for everyone looks the same from here, so no claim.
    pacer = world.peer(Pacer(origin.port, rate=RATE))
    services = {"ip": _url(pacer.port, "ip.test")}
    code, db = _sweep(world, origin, tmp_path, services)
    assert code == 0
    row = _rows(db, capsys)["ip"]
    assert (row["verdict"], row["detail"], row["rule"]) == (
        "accessible", "ok", "throughput.slow_address",
    )  # fmt: skip
    assert _near_rate(row["throughput_kbps"])
    # Two sweeps while the address is fast, into the same database: this vantage's history.
    pacer.names = frozenset()  # the censor paces nothing for a while
    for _ in range(2):
        assert _sweep(world, origin, tmp_path, services)[0] == 0
    pacer.names = None  # and everything again
    assert _sweep(world, origin, tmp_path, services)[0] == 0
    capsys.readouterr()
    assert main(["export", "--db", str(db), "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["rule"] for r in rows] == [
        "throughput.slow_address", "throughput.not_slower", "throughput.not_slower", "throttle.ip",
    ]  # fmt: skip
    row = rows[-1]
    assert (row["verdict"], row["layer"], row["detail"]) == ("throttled", "tcp", "throttle.ip")
    assert _near_rate(row["throughput_kbps"])
    assert row["baseline_kbps"] > 10 * row["throughput_kbps"]  # the references' rate
    history = _evidence(db, row, capsys)["verdict_evidence"]["throughput"]["history"]
    assert (history["tests"], history["unthrottled"], history["fast_before"]) == (3, 3, True)
    assert history["median_kbps"] >= 4 * row["throughput_kbps"]


def test_a_server_slow_for_everyone_is_not_throttled(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The control helper reaches the address through the same pacer: slow there too.
    pacer = world.peer(Pacer(origin.port, rate=RATE))
    with helper_process(world) as helper:
        code, db = _sweep(
            world, origin, tmp_path, {"ip": _url(pacer.port, "ip.test")}, flags=("--helper", helper)
        )
    assert code == 0
    row = _rows(db, capsys)["ip"]
    assert (row["verdict"], row["detail"], row["rule"]) == (
        "accessible", "ok", "throughput.slow_everywhere",
    )  # fmt: skip
    facts = _evidence(db, row, capsys)["verdict_evidence"]["throughput"]
    assert len(facts["helper"]["kbps"]) == 3 and facts["vs_helper"]["slower"] is False
    assert _near_rate(facts["helper"]["median_kbps"])


def test_uniformly_slow_link_is_not_throttling(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pacer = world.peer(Pacer(origin.port, rate=RATE))
    link = world.peer(Pacer(origin.port, rate=RATE))  # the reference is as slow
    code, db = _sweep(
        world, origin, tmp_path, {"slow": _url(pacer.port, "slow.test")},
        reference=_url(link.port, "ref.test"),
    )  # fmt: skip
    assert code == 0
    row = _rows(db, capsys)["slow"]
    assert (row["verdict"], row["detail"], row["rule"]) == (
        "accessible", "ok", "throughput.not_slower",
    )  # fmt: skip
    assert _near_rate(row["throughput_kbps"])
    facts = _evidence(db, row, capsys)["verdict_evidence"]["throughput"]
    assert facts["vs_reference"]["slower"] is False


def test_delayed_throttle_is_found_with_its_offset(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    after = 100_000  # wire bytes at full speed (handshake and headers included), then paced
    pacer = world.peer(Pacer(origin.port, rate=RATE, names={"late.test"}, after=after))
    code, db = _sweep(world, origin, tmp_path, {"late": _url(pacer.port, "late.test")})
    assert code == 0
    row = _rows(db, capsys)["late"]
    assert (row["verdict"], row["detail"]) == ("throttled", "throttle.sni")
    assert _near_rate(row["throughput_kbps"])  # the rate after the trigger, not the average
    facts = _evidence(db, row, capsys)["verdict_evidence"]["throughput"]
    # Body bytes: the trigger's count less the handshake, headers and record overhead, plus
    # what trickled in before the next sample (20 ms, give or take the loop's jitter).
    assert 0.85 * after <= facts["change_at_bytes"] <= after + RATE * 0.05
    assert f"after the first {facts['change_at_bytes']} bytes" in row_reason(db, row, capsys)
    capsys.readouterr()
    assert main(["show", str(row["measurement_id"]), "--db", str(db)]) == 0
    shown = capsys.readouterr().out
    kbps, baseline = round(row["throughput_kbps"]), round(row["baseline_kbps"])
    assert f"  throughput: {kbps} kbit/s  baseline: {baseline} kbit/s\n" in shown
    assert all(at is not None for at in facts["target"]["change_at_bytes"])
    assert not any(facts["innocuous"]["change_at_bytes"])


def row_reason(db: Path, row: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["show", str(row["measurement_id"]), "--db", str(db), "--json"]) == 0
    return str(json.loads(capsys.readouterr().out)["row"]["reason"])


def test_throughput_tests_never_overlap(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two services measured at once by the scheduler; both addresses slow for every SNI so
    # each transfer lasts its whole time budget, and a recorder in front of the reference.
    a = world.peer(Pacer(origin.port, rate=RATE))
    b = world.peer(Pacer(origin.port, rate=RATE))
    recorder = world.peer(Pacer(origin.port, rate=RATE, names=()))  # never paces
    code, db = _sweep(
        world, origin, tmp_path,
        {"a": _url(a.port, "a.test"), "b": _url(b.port, "b.test")},
        reference=_url(recorder.port, "ref.test"), max_seconds_per_test=9 * 0.3,
    )  # fmt: skip
    assert code == 0
    # Every transfer of both tests: the innocuous-SNI ones at a and b (the ordinary
    # measurement never uses that name), and every reference transfer.
    spans = sorted(
        a.intervals("www.example.com") + b.intervals("www.example.com") + recorder.intervals()
    )
    assert len(spans) == 12
    for (_, end), (start, _) in itertools.pairwise(spans):
        # 20 ms: the proxy notices a close a moment after the client's next connect.
        assert start >= end - 0.02, spans
    # Had they overlapped, each would have measured the other (and read about half the rate).
    rows = _rows(db, capsys).values()
    assert {r["rule"] for r in rows} == {"throughput.slow_address"}
    assert all(_near_rate(r["throughput_kbps"]) for r in rows)


def test_no_throughput_flag_and_budgets(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fast = world.peer(Pacer(origin.port, rate=RATE, names=()))
    services = {"fast": _url(fast.port, "fast.test")}
    (tmp_path / "off").mkdir()
    code, db = _sweep(world, origin, tmp_path / "off", services, flags=("--no-throughput",))
    row = _rows(db, capsys)["fast"]
    assert code == 0 and (row["verdict"], row["throughput_kbps"]) == ("accessible", None)
    skipped = _evidence(db, row, capsys)["verdict_evidence"]["throughput_skipped"]
    assert "off" in skipped and len(fast.connections) == 2  # the ordinary handshake and GET

    # Twice into one database: the second sweep's daily budget has room for no second test.
    services = {"fast": _url(origin.port, "fast.test")}
    per_test = 9 * 20_000
    budget: dict[str, Any] = {"max_bytes_per_test": per_test, "max_bytes_per_day": 2 * per_test - 1}
    (tmp_path / "day").mkdir()
    code, db = _sweep(world, origin, tmp_path / "day", services, **budget)
    first = _rows(db, capsys)["fast"]
    assert code == 0 and first["throughput_kbps"] is not None
    spent = _evidence(db, first, capsys)["verdict_evidence"]["throughput_bytes"]
    assert spent == per_test  # every transfer stopped at its share of the budget
    code, db = _sweep(world, origin, tmp_path / "day", services, **budget)
    assert code == 0
    rows = [json.loads(line) for line in _export_all(db, capsys)]
    second = max(rows, key=lambda r: r["measurement_id"])
    assert second["throughput_kbps"] is None
    facts = _evidence(db, second, capsys)["verdict_evidence"]
    assert "budget" in facts["throughput_skipped"]
    lines = {c["name"]: c for c in facts["control_status"]}
    assert lines["throughput_innocuous"]["outcome"] == "skipped"
    assert "budget" in lines["throughput_innocuous"]["detail"]

    # A sweep budget smaller than one test: no test at all.
    (tmp_path / "sweep").mkdir()
    code, db = _sweep(
        world, origin, tmp_path / "sweep", services,
        max_bytes_per_test=per_test, max_bytes_per_sweep=per_test - 1,
    )  # fmt: skip
    row = _rows(db, capsys)["fast"]
    assert "budget" in _evidence(db, row, capsys)["verdict_evidence"]["throughput_skipped"]


def _export_all(db: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    capsys.readouterr()
    assert main(["export", "--db", str(db), "--format", "jsonl"]) == 0
    return capsys.readouterr().out.splitlines()


def test_a_metered_network_gets_no_timed_transfers(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fast = world.peer(Pacer(origin.port, rate=RATE, names=()))
    services = {"fast": _url(fast.port, "fast.test")}
    (tmp_path / "metered").mkdir()
    code, db = _sweep(world, origin, tmp_path / "metered", services, flags=("--metered", "true"))
    row = _rows(db, capsys)["fast"]
    assert code == 0 and (row["verdict"], row["throughput_kbps"]) == ("accessible", None)
    facts = _evidence(db, row, capsys)["verdict_evidence"]
    assert "the network is marked metered" in facts["throughput_skipped"]
    assert len(fast.connections) == 2  # the ordinary handshake and GET, no transfer
    # Not metered: the same service is timed, its transfers half the time on the line.
    (tmp_path / "unmetered").mkdir()
    code, db = _sweep(
        world, origin, tmp_path / "unmetered", services, flags=("--metered", "false"),
        max_link_share=0.5,
    )  # fmt: skip
    row = _rows(db, capsys)["fast"]
    assert code == 0 and row["throughput_kbps"] is not None
    assert "throughput_skipped" not in _evidence(db, row, capsys)["verdict_evidence"]
