"""Throttling found where no list names a download: the SNI replay, and a slow page timed.

The SNI replay: ``probe run`` with the helper's replay listener behind a policer.

The helper runs as a user starts it (``probe helper serve --replay-listen``) and announces a
public port where a Pacer (tests/servers/throughput_server.py) forwards to its listener,
slowing what comes back to the probe for connections whose ClientHello names ``sni.test``,
as a censor's SNI policer in the path would. The target pages are small: no list names a
download, and the throttle is still found.

A slow page: a large page through a policer on its own address comes too slowly to finish
(``http.slow_body``) and is timed as a throughput URL would be (rule 7's escalation).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.readback import export_rows, shown_evidence
from tests.servers.sweeps import run_sweep, service_lines
from tests.servers.throughput_server import ByteServer, Pacer
from tests.servers.world import World, free_port, helper_process, running_world

NAMES = ["ref.test", "sni.test", "fast.test"]
RATE = 100_000  # bytes/s through the pacer: 800 kbit/s
REPLAY = {"replay_bytes": 300_000, "replay_seconds": 0.4, "sample_interval": 0.02}


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
    urls: dict[str, list[str]],
    helper: str | None,
    control_reference: str = "/bytes/1000",
    **throughput: Any,
) -> Path:
    lines = [
        line for name, service_urls in urls.items() for line in service_lines(name, service_urls)
    ]
    flags = ["--helper", helper] if helper else []
    reference = f"https://ref.test:{origin.port}{control_reference}"
    code, db = run_sweep(world, tmp, lines, reference, {**REPLAY, **throughput}, flags)
    assert code == 0
    return db


def _rows(db: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    return export_rows(db, capsys, "input")


def _evidence(db: Path, row: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> Any:
    return shown_evidence(db, row, capsys)


def test_a_name_policed_on_any_address_is_throttled_without_a_named_download(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listen = free_port()
    pacer = world.peer(Pacer(listen, rate=RATE, names={"sni.test"}))
    flags = ("--replay-listen", f"127.0.0.1:{listen}", "--replay-public-port", str(pacer.port))
    sni, fast = (f"https://{n}:{origin.port}/bytes/2000" for n in ("sni.test", "fast.test"))
    again = f"https://fast.test:{origin.port}/bytes/3000"
    with helper_process(world, flags=flags) as helper:
        db = _sweep(world, origin, tmp_path, {"sni": [sni], "fast": [fast, again]}, helper)
    rows = _rows(db, capsys)
    row = rows[sni]
    assert (row["verdict"], row["layer"], row["detail"], row["rule"]) == (
        "throttled", "tls", "throttle.sni", "replay.sni",
    )  # fmt: skip
    # The pacer's rate, within what a loaded machine's timers allow; the other name's far above.
    assert 0.5 * RATE * 8 / 1000 <= row["throughput_kbps"] <= 1.3 * RATE * 8 / 1000
    assert row["baseline_kbps"] > 10 * row["throughput_kbps"]
    facts = _evidence(db, row, capsys)["verdict_evidence"]["replay"]
    assert facts["down"]["vs_innocuous"]["slower"] is True
    assert len(facts["down"]["target"]["kbps"]) == 3 and len(facts["up"]["target"]["kbps"]) == 3
    # Every replay connection went through the pacer: the innocuous baseline (3 each way), the
    # screening of each name (one each way), and the trials of the one found slow (12); and
    # the other name's trials (12) where a busy machine made its loopback screening look slow.
    assert len(pacer.intervals("sni.test")) == 2 + 6
    assert len(pacer.intervals()) in (6 + 4 + 12, 6 + 4 + 24)
    # The trials were sized from the screening's rate to end by their bytes, not their time
    # (one ended by time leaves its bytes queued in the throttle, slowing the next); the
    # uploads, not slowed here, kept the full size.
    shown = _evidence(db, row, capsys)["observations"]
    timed = [o for o in shown if o.get("sni") == "sni.test" and o.get("direction")]
    assert (
        sorted((o["direction"], o["stopped"], o["bytes"] < 300_000) for o in timed)
        == [("down", "bytes", True)] * 3 + [("up", "bytes", False)] * 3
    )
    # The other name, replayed once for both of its inputs, is not throttled.
    replayed = [rows[u] for u in (fast, again)]
    assert all((r["verdict"], r["detail"]) == ("accessible", "ok") for r in replayed)
    evidence = [_evidence(db, r, capsys)["verdict_evidence"] for r in replayed]
    skipped = sorted(e.get("replay_skipped") or "" for e in evidence)
    assert skipped[0] == "" and "was replayed with" in skipped[1]
    # Screened (one transfer each way against the baseline) and not slow; or, if tried, not
    # markedly slower than the innocuous name.
    facts = next(e["replay"] for e in evidence if "replay" in e)
    if facts.get("screened"):
        assert facts["down"]["screen_kbps"] > 10_000
    else:
        assert len(pacer.intervals()) == 6 + 4 + 24
        assert not any(facts[d]["vs_innocuous"]["slower"] for d in ("down", "up"))


def test_a_helper_without_a_replay_listener_says_so(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"https://fast.test:{origin.port}/bytes/2000"
    with helper_process(world) as helper:
        db = _sweep(world, origin, tmp_path, {"fast": [url]}, helper)
    row = _rows(db, capsys)[url]
    assert (row["verdict"], row["detail"]) == ("accessible", "ok")
    evidence = _evidence(db, row, capsys)["verdict_evidence"]
    assert "no SNI replay listener" in evidence["replay_skipped"]
    assert "no SNI replay listener" in evidence["controls"]["replay_problem"]


def test_a_page_too_slow_to_finish_is_timed_and_found_throttled(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Fast for the first 100 kB, then 800 kbit/s for this name only: the page (4 MB, read up
    # to 1 MiB) cannot finish within the 2 s HTTP timeout; the other name on it is fast.
    pacer = world.peer(Pacer(origin.port, rate=RATE, names={"sni.test"}, after=100_000))
    url = f"https://sni.test:{pacer.port}/bytes/4000000"
    db = _sweep(
        world, origin, tmp_path, {"sni": [url]}, None, replay=False,
        max_bytes_per_test=9 * 300_000, max_seconds_per_test=9 * 0.4,
        reference=[f"https://ref.test:{origin.port}/bytes/4000000"],
    )  # fmt: skip
    row = _rows(db, capsys)[url]
    assert (row["verdict"], row["layer"], row["detail"], row["rule"]) == (
        "throttled", "tls", "throttle.sni", "throttle.sni",
    )  # fmt: skip
    evidence = _evidence(db, row, capsys)["verdict_evidence"]
    assert evidence["throughput"]["vs_innocuous"]["slower"] is True
    assert evidence["throughput_bytes"] > 0


def test_a_page_that_finished_far_slower_than_the_reference_is_timed(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1.6 Mbit/s for this name only: the 100 kB page finishes in about 0.5 s (the HTTP
    # timeout is 2 s), at most a quarter of the 200 kB reference page's loopback rate (the
    # vantage check's reference: pages of the same run).
    pacer = world.peer(Pacer(origin.port, rate=2 * RATE, names={"sni.test"}))
    url = f"https://sni.test:{pacer.port}/bytes/100000"
    db = _sweep(
        world, origin, tmp_path, {"sni": [url]}, None, "/bytes/200000", replay=False,
        max_bytes_per_test=9 * 300_000, max_seconds_per_test=9 * 0.4,
        reference=[f"https://ref.test:{origin.port}/bytes/200000"],
    )  # fmt: skip
    row = _rows(db, capsys)[url]
    assert (row["verdict"], row["layer"], row["detail"], row["rule"]) == (
        "throttled", "tls", "throttle.sni", "throttle.sni",
    )  # fmt: skip
    shown = _evidence(db, row, capsys)
    pages = [o for o in shown["observations"] if "hops" in o]
    assert pages and pages[-1]["hops"][-1]["failure"] is None  # the page finished
    assert shown["verdict_evidence"]["throughput"]["vs_innocuous"]["slower"] is True
    assert shown["verdict_evidence"]["throughput_bytes"] > 0


def test_a_slow_page_that_times_fast_stays_what_the_page_said(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every name is slow on this address, the reference too: a slow link, not a throttle.
    pacer = world.peer(Pacer(origin.port, rate=RATE))
    link = world.peer(Pacer(origin.port, rate=RATE))
    url = f"https://fast.test:{pacer.port}/bytes/4000000"
    db = _sweep(
        world, origin, tmp_path, {"fast": [url]}, None, replay=False,
        max_bytes_per_test=9 * 300_000, max_seconds_per_test=9 * 0.4,
        reference=[f"https://ref.test:{link.port}/bytes/4000000"],
    )  # fmt: skip
    row = _rows(db, capsys)[url]
    assert (row["verdict"], row["detail"], row["rule"]) == (
        "inconclusive", "control.failed", "http.slow_body",
    )  # fmt: skip
    facts = _evidence(db, row, capsys)["verdict_evidence"]["throughput"]
    assert facts["vs_reference"]["slower"] is False


def test_a_metered_network_gets_no_replay(
    world: World, origin: ByteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("PROBE_METERED", "true")  # network.metered, as a unit's Environment=
    url = f"https://fast.test:{origin.port}/bytes/2000"
    with helper_process(world) as helper:
        db = _sweep(world, origin, tmp_path, {"fast": [url]}, helper)
    evidence = _evidence(db, _rows(db, capsys)[url], capsys)["verdict_evidence"]
    assert "the network is marked metered" in evidence["replay_skipped"]
    assert "replay_problem" not in evidence["controls"]  # the helper was not even asked
