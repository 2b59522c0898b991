"""``probe daemon`` as a real process against a loopback world: its schedule, its signals,
systemd's notify socket, ``probe status``, and outages.

Intervals are seconds, and every wait is bounded by a deadline several times what it needs
(the CI machine may be busy); assertions are about order and counts, not exact times.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
from probe.cli import main
from probe.config import DAEMON_DEFAULTS
from probe.daemon.network import read_network
from probe.store.database import open_database
from tests.geoip_files import asn_db
from tests.servers.dns_server import Answer, Silent
from tests.servers.world import LOOPBACK, World, running_world

NAMES = ["ref.test", "ok.test", "flipref.test"]


@pytest.fixture(scope="module")
def world(ca: trustme.CA, ca_bundle: str) -> Iterator[World]:
    with running_world(ca, ca_bundle, NAMES) as w:
        yield w


def _targets(w: World, tmp: Path, extra: tuple[str, ...] = ()) -> Path:
    url = f"https://ok.test:{w.web.https_port}/"
    lines = []
    for name, category in (("chat", "messaging"), ("chat2", "messaging"), ("feed", "social")):
        lines += [
            "[[service]]",
            f'name = "{name}"',
            f'category = "{category}"',
            f'urls = ["{url}"]',
        ]
    lines += list(extra)
    path = tmp / "targets.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _config(w: World, tmp: Path, daemon: str, reference: str | None = None) -> Path:
    ref = reference or f"https://ref.test:{w.web.https_port}/"
    path = w.write_config(tmp / "probe.toml", ref)
    with path.open("a", encoding="utf-8") as f:
        f.write(daemon)
    return path


TWO_GROUPS = """
[daemon]
jitter = 0
network_poll = 1
stop_deadline = 2

[[daemon.group]]
name = "messaging"
categories = ["messaging"]
every = "2s"

[[daemon.group]]
name = "social"
categories = ["social"]
every = "6s"
"""


@contextlib.contextmanager
def daemon(
    config: Path, targets: Path, db: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A running ``probe daemon``; its stderr goes to a file the test reads."""
    log = db.with_suffix(".log")
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "probe", "daemon", "--config", str(config),
             "--targets", str(targets), "--db", str(db)],
            stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **(env or {})},
        )  # fmt: skip
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def until(
    what: Callable[[], object], timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> object:
    """Poll ``what`` until it is truthy (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the daemon exited with {proc.returncode}")
        time.sleep(0.1)
    pytest.fail("timed out waiting")


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows read as another process would (WAL lets a reader in); [] before the tables."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        try:
            return list(conn.execute(sql))
        except sqlite3.OperationalError:
            return []


SWEEPS = (
    'SELECT s."group", s.started_at, r.finished_at, r.status FROM daemon_sweeps s'
    " JOIN runs r USING (run_id) ORDER BY s.started_at"
)


RUN_SETTINGS = "SELECT settings FROM runs ORDER BY started_at"


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def _seconds(text: object) -> float:
    return dt.datetime.fromisoformat(str(text)).timestamp()


def test_two_groups_on_their_own_intervals_never_stacked_notify_and_status(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(0.2)
    messages: list[str] = []
    done = threading.Event()

    def read() -> None:  # as systemd does: at once, so the daemon's queue never fills
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                messages.append(listener.recv(4096).decode())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    db = tmp_path / "r.sqlite"
    env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}
    config = _config(world, tmp_path, TWO_GROUPS)
    with listener, daemon(config, _targets(world, tmp_path), db, env) as (proc, log):
        # Social is swept at least twice (6 s apart), so messaging (2 s) had time for more.
        until(lambda: len([r for r in rows(db, SWEEPS) if r[0] == "social" and r[2]]) >= 2,
              timeout=90, proc=proc)  # fmt: skip
        capsys.readouterr()
        assert main(["status", "--db", str(db), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert stop(proc) == 0, log.read_text()
        time.sleep(0.5)
        done.set()
        reader.join(timeout=5)
    assert status["kind"] == "status" and status["version"] == 1
    assert status["daemon"]["running"] is True and status["daemon"]["pid"] == proc.pid
    groups = {g["name"]: g for g in status["groups"]}
    assert set(groups) == {"messaging", "social"}
    assert groups["social"]["every_s"] == 6.0 and groups["messaging"]["every_s"] == 2.0
    assert any(g["next_at"] for g in groups.values())
    assert status["verdicts"].get("accessible", 0) >= 4
    sweeps = rows(db, SWEEPS)
    by = {n: [r for r in sweeps if r[0] == n] for n in ("messaging", "social")}
    assert len(by["messaging"]) > len(by["social"]) >= 2
    for group, every in (("messaging", 2.0), ("social", 6.0)):
        starts = [_seconds(r[1]) for r in by[group]]
        assert all(b - a >= every * 0.9 for a, b in itertools.pairwise(starts)), (group, starts)
    # No concurrency configured: the daemon's own default, lighter than probe run's.
    used = {json.loads(str(r[0]))["limits.concurrency"] for r in rows(db, RUN_SETTINGS)}
    assert used == {DAEMON_DEFAULTS["limits.concurrency"]} and used != {128}
    # Never stacked: each sweep starts after the one before it ended.
    ended = [(_seconds(r[1]), _seconds(r[2])) for r in sweeps if r[2]]
    assert all(start >= prev_end - 0.01 for (_, prev_end), (start, _) in itertools.pairwise(ended))
    text = "\n".join(messages)
    assert messages[0].startswith("READY=1"), messages[:3]
    assert "WATCHDOG=1" in text and "STOPPING=1" in text and "STATUS=" in text


def test_sigterm_mid_sweep_keeps_what_finished_and_exits_0(world: World, tmp_path: Path) -> None:
    world.name("hang.test", resolver=Silent())
    hang = (
        "[[service]]",
        'name = "hang"',
        'category = "messaging"',
        'urls = ["https://hang.test/"]',
    )
    db = tmp_path / "r.sqlite"
    config = _config(world, tmp_path, TWO_GROUPS.replace('every = "6s"', 'every = "1h"'))
    # A DNS timeout far past the stop deadline: only the deadline can end that input.
    text = config.read_text().replace("dns_timeout = 1.0", "dns_timeout = 60.0")
    config.write_text(text)
    with daemon(config, _targets(world, tmp_path, hang), db) as (proc, log):
        until(lambda: rows(db, "SELECT count(*) FROM measurements")[0][0] >= 2 if rows(
            db, "SELECT count(*) FROM measurements") else False, proc=proc)  # fmt: skip
        t0 = time.monotonic()
        assert stop(proc) == 0, log.read_text()
        took = time.monotonic() - t0
    assert took < 20  # the 2 s deadline, not the 60 s DNS timeout
    (run,) = rows(db, "SELECT status, finished_at, run_id FROM runs")
    assert run[0] == "interrupted" and run[1] is not None
    stored = rows(db, f"SELECT input, verdict FROM measurements WHERE run_id = '{run[2]}'")
    assert len(stored) == 2 and all(v == "accessible" for _, v in stored)
    assert "stopped; every input that finished is stored" in log.read_text()


def test_sighup_keeps_the_old_config_when_the_new_is_bad_and_takes_a_good_one(
    world: World, tmp_path: Path
) -> None:
    db = tmp_path / "r.sqlite"
    slow = TWO_GROUPS.replace('every = "2s"', 'every = "1h"').replace(
        'every = "6s"', 'every = "1h"'
    )
    config = _config(world, tmp_path, slow)
    good = config.read_text()
    with daemon(config, _targets(world, tmp_path), db) as (proc, log):
        until(lambda: len([r for r in rows(db, SWEEPS) if r[2]]) >= 2, proc=proc)
        config.write_text(good.replace('every = "1h"', 'every = "soon"', 1))
        proc.send_signal(signal.SIGHUP)
        until(lambda: "reload failed" in log.read_text(), proc=proc)
        assert f"{config}:" in log.read_text() and "daemon.group[1].every" in log.read_text()
        time.sleep(3)  # the old schedule (1 h) holds: no new sweep
        assert len(rows(db, SWEEPS)) == 2 and proc.poll() is None
        assert "[limits]\n" in good
        reloaded = good.replace('every = "1h"', 'every = "1s"', 1)
        config.write_text(reloaded.replace("[limits]\n", "[limits]\nconcurrency = 5\n"))
        proc.send_signal(signal.SIGHUP)
        until(lambda: "reloaded" in log.read_text(), proc=proc)
        until(lambda: len([r for r in rows(db, SWEEPS) if r[0] == "messaging"]) >= 3, proc=proc)
        assert stop(proc) == 0, log.read_text()
    # The settings are reloaded too: the file's concurrency from then on, the default before.
    used = [json.loads(str(r[0]))["limits.concurrency"] for r in rows(db, RUN_SETTINGS)]
    assert (
        used[:2] == [DAEMON_DEFAULTS["limits.concurrency"]] * 2
        and used[2:]
        and set(used[2:]) == {5}
    )


def test_an_offline_vantage_opens_an_outage_and_an_online_sweep_closes_it(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.name("flipref.test", resolver=Silent())
    db = tmp_path / "r.sqlite"
    every = TWO_GROUPS.replace('every = "6s"', 'every = "1h"').replace('"2s"', '"3s"')
    config = _config(world, tmp_path, every, f"https://flipref.test:{world.web.https_port}/")
    outages = "SELECT started_at, ended_at, detected_by, vantage_name FROM outages"
    with daemon(config, _targets(world, tmp_path), db) as (proc, log):
        until(lambda: rows(db, outages), proc=proc)
        capsys.readouterr()
        assert main(["status", "--db", str(db), "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)["outages"]
        assert [o["open"] for o in shown] == [True] and shown[0]["vantage"] == "loopback-test"
        world.name("flipref.test", resolver=Answer(LOOPBACK))
        until(lambda: rows(db, outages)[0][1] is not None, proc=proc)
        assert stop(proc) == 0, log.read_text()
    ((started, ended, by, vantage),) = rows(db, outages)
    assert by == "sweep" and vantage == "loopback-test" and _seconds(ended) > _seconds(started)
    statuses = [r[3] for r in rows(db, SWEEPS)]
    assert statuses[0] == "offline" and "completed" in statuses  # (SIGTERM may cut the last)
    capsys.readouterr()
    assert main(["status", "--db", str(db)]) == 0
    human = capsys.readouterr().out
    assert "daemon: not running" in human and "outage began" in human


def test_the_daemon_holds_the_sweep_lock_and_applies_the_retention_window(
    world: World, tmp_path: Path
) -> None:
    db = tmp_path / "r.sqlite"
    # A run 100 days old, with its evidence, from before the daemon.
    old = open_database(str(db))
    started = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    info = RunInfo("0" * 32, started, Vantage(), "0.1.0", {})
    old.begin_run(info)
    verdict = Verdict("accessible", None, "ok", "all.ok", "Every step succeeded.", {"x": 1})
    old.record(
        MeasurementRecord(info.run_id, "s", "social", "https://s.test/", verdict, started, 1)
    )
    old.finish_run(info.run_id, "completed", {}, finished_at=started)
    old.close()
    config = _config(world, tmp_path, TWO_GROUPS + '[storage]\nretention = "30d"\n')
    targets = _targets(world, tmp_path)
    with daemon(config, targets, db) as (proc, log):
        # After its first sweep the daemon prunes: the old run's evidence goes, its row stays.
        until(lambda: "pruned:" in log.read_text(), proc=proc)
        evidence = rows(
            db, "SELECT count(*) FROM evidence e JOIN measurements m ON m.id = e.measurement_id"
            f" WHERE m.run_id = '{info.run_id}'",
        )  # fmt: skip
        kept = rows(db, f"SELECT count(*) FROM measurements WHERE run_id = '{info.run_id}'")
        assert evidence == [(0,)] and kept == [(1,)]
        # A sweep started meanwhile exits 5 at once, naming the daemon.
        other = subprocess.run(
            [sys.executable, "-m", "probe", "run", "--config", str(config), "--targets",
             str(targets), "--db", str(db), "--no-progress"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert other.returncode == 5, other.stderr
        assert "probe daemon" in other.stderr and str(proc.pid) in other.stderr
        assert stop(proc) == 0, log.read_text()


def test_a_detected_asn_is_part_of_the_network_the_sweeps_are_attributed_to(
    world: World, tmp_path: Path
) -> None:
    mmdb = asn_db(tmp_path / "asn.mmdb", asn=64511)
    config = _config(world, tmp_path, TWO_GROUPS)
    text = config.read_text(encoding="utf-8").replace("asn = 64500", f'geoip_db = ["{mmdb}"]')
    config.write_text(text, encoding="utf-8")
    db = tmp_path / "r.sqlite"
    networks = (
        "SELECT s.network, r.asn, r.asn_source FROM daemon_sweeps s JOIN runs r USING (run_id)"
    )
    with daemon(config, _targets(world, tmp_path), db) as (proc, log):
        until(lambda: len(rows(db, networks)) >= 2, proc=proc)
        assert stop(proc) == 0, log.read_text()
    resolver = world.resolver.address
    detected, undetected = (read_network(resolver, a).digest() for a in (64511, None))
    assert detected != undetected
    found = rows(db, networks)
    # Every sweep measured from AS 64511 (found in the file), and each is attributed to the
    # network with that AS: the first too, whose network was read before it detected it.
    assert {(n, a, s) for n, a, s in found} == {(detected, 64511, "geoip_db")}, found
    # Noticing the AS did not count as a change of network: no extra prompt.
    assert "the network changed" not in log.read_text()
