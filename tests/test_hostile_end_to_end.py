"""Inputs that used to end a sweep or to read as censorship, through the real ``probe`` CLI.

Every server is on 127.0.0.1. A plain-HTTP URL whose connect fails and a redirect to an
unreachable host used to raise in the classifier (the sweep exited 1 and the rest of the list
was never measured); a server that is broken on one path, for everyone, used to read as
``blocked http.reset`` or ``http.timeout``. Each case must now be its own row, never blocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from measurements import trust
from probe.cli import main
from probe.config import load_settings
from probe.engine.sweep import Sweep
from probe.store.database import open_database
from probe.store.writer import AsyncWriter
from targets.model import Service, TargetList
from tests.servers.broken_http import BrokenHTTP
from tests.servers.tcp_servers import ClosedPort
from tests.servers.world import World, helper_process, running_world

NAMES = ["ref.test", "ok.test", "closed.test", "hop.test", "broken.test"]


@pytest.fixture(scope="module")
def world(ca: trustme.CA, ca_bundle: str) -> Iterator[World]:
    with running_world(ca, ca_bundle, NAMES) as w:
        yield w


@pytest.fixture(scope="module")
def peers(world: World) -> dict[str, Any]:
    # Slower than the probe's http_timeout (2 s in tests) for everyone, the helper included
    # (it answers within its own 10 s).
    return {"closed": world.peer(ClosedPort()), "broken": world.peer(BrokenHTTP(slow=6.0))}


def _inputs(world: World, peers: dict[str, Any]) -> dict[str, str]:
    closed, broken, web = peers["closed"].port, peers["broken"].port, world.web
    return {
        "closed": f"http://closed.test:{closed}/",
        "hop": f"http://hop.test:{web.http_port}/redirect?to=http://closed.test:{closed}/",
        "garbage": f"http://broken.test:{broken}/garbage",
        "endless": f"http://broken.test:{broken}/endless",
        "headers": f"http://broken.test:{broken}/headers",
        "slow": f"http://broken.test:{broken}/slow?q=1",
        "fine": f"http://broken.test:{broken}/",
        "ok": f"https://ok.test:{web.https_port}/",
    }


def _run(world: World, tmp: Path, inputs: dict[str, str], *flags: str) -> tuple[int, Path]:
    lines = []
    for name, url in inputs.items():
        lines += ["[[service]]", f'name = "{name}"', 'category = "social"', f'urls = ["{url}"]']
    targets = tmp / "targets.toml"
    targets.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = world.write_config(tmp / "probe.toml", f"https://ref.test:{world.web.https_port}/")
    db = tmp / "results.sqlite"
    args = ["run", "--config", str(config), "--targets", str(targets), "--db", str(db)]
    return main([*args, "--no-progress", *flags]), db


def _rows(db: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    capsys.readouterr()
    assert main(["export", "--db", str(db), "--format", "jsonl"]) == 0
    return {r["service"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}


EXPECTED = {
    "closed": ("inconclusive", "control.failed"),
    "hop": ("inconclusive", "control.failed"),
    "garbage": ("inconclusive", "http.malformed"),
    "endless": ("inconclusive", "http.malformed"),
    "headers": ("inconclusive", "http.malformed"),
    "slow": ("inconclusive", "control.failed"),
    "fine": ("accessible", "ok"),
    "ok": ("accessible", "ok"),
}


def test_a_broken_server_is_never_blocked_and_no_input_ends_the_sweep(
    world: World, peers: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, db = _run(world, tmp_path, _inputs(world, peers))
    assert code == 0
    rows = _rows(db, capsys)
    assert {k: (r["verdict"], r["detail"]) for k, r in rows.items()} == EXPECTED
    # The innocuous-Host control asked for the slow path itself, with its query, not for "/".
    assert peers["broken"].paths.count("/slow?q=1") >= 3  # two attempts and the control


def test_with_the_helper_a_broken_server_is_still_not_blocked(
    world: World, peers: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The helper asks the same server for the same URL: garbage there too, and the slow path
    # answers it, but far later than the probe waited (like with like).
    inputs = {k: v for k, v in _inputs(world, peers).items() if k != "hop"}
    with helper_process(world) as helper:
        code, db = _run(world, tmp_path, inputs, "--helper", helper)
    assert code == 0
    rows = _rows(db, capsys)
    assert not [k for k, r in rows.items() if r["verdict"] == "blocked"]
    assert (rows["closed"]["verdict"], rows["closed"]["detail"]) == ("inconclusive", "site.down")
    assert rows["garbage"]["detail"] == "http.malformed"


def test_targets_check_refuses_what_the_client_cannot_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = ["http://e\u0301x.test/", "http://\ufb00.test/", "http://x.test/" + "a" * 70_000]
    for i, url in enumerate(bad):
        path = tmp_path / f"t{i}.toml"
        path.write_text(
            f'[[service]]\nname = "s"\ncategory = "social"\nurls = ["{url}"]\n', encoding="utf-8"
        )
        capsys.readouterr()
        assert main(["targets", "check", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"{path.name}:4" in err and "cannot be requested" in err and len(err) < 400


async def test_an_input_that_raises_is_its_own_row(
    world: World, peers: dict[str, Any], tmp_path: Path
) -> None:
    # An input no loader would let through (longer than httpx takes), handed to the engine
    # directly: the error is that input's row, and the next input is still measured.
    url = f"https://ok.test:{world.web.https_port}/"
    too_long = f"http://127.0.0.1:{world.web.http_port}/" + "a" * 70_000
    services = (
        Service("bad", "social", (too_long,), ()),
        Service("ok", "social", (url,), ()),
    )
    config = world.write_config(tmp_path / "probe.toml", url)
    settings = load_settings({}, str(config), environ={})
    trust.preload(world.ca_bundle)  # what `probe run` does before its loop starts
    writer = AsyncWriter(open_database(str(tmp_path / "r.sqlite")))
    try:
        result = await Sweep(settings, TargetList(services, (url,), "test"), writer).run()
    finally:
        await writer.close()
    got = {r.service: r.verdict for r in result.records}
    assert result.status == "completed"
    assert (got["bad"].verdict, got["bad"].detail) == ("inconclusive", "probe.error")
    assert got["bad"].evidence["error_type"] == "InvalidURL"
    assert got["ok"].verdict == "accessible"
