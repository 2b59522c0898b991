"""Sweeps that must not make trouble, with real ``probe run`` processes on one SQLite file:
a second sweep refused while one runs (exit 5, the holder named), kill -9 then the next sweep,
a reader's long transaction and a writer's lock during a sweep, and a full disk."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.mounts import resize, tmpfs
from tests.servers.dns_server import Silent
from tests.servers.world import World, running_world

QUICK = [f"q{i}.test" for i in range(20)]


@pytest.fixture(scope="module")
def world(ca: trustme.CA, ca_bundle: str) -> Iterator[World]:
    with running_world(ca, ca_bundle, ["ref.test", "hang.test", *QUICK]) as w:
        w.name("hang.test", resolver=Silent())  # its lookup waits out the DNS timeout
        yield w


def _targets(world: World, path: Path, names: list[str], hang: bool = False) -> Path:
    lines = []
    for name in names:
        lines += ["[[service]]", f'name = "{name.split(".")[0]}"', 'category = "social"',
                  f'urls = ["https://{name}:{world.web.https_port}/"]']  # fmt: skip
    if hang:
        lines += ["[[service]]", 'name = "hang"', 'category = "social"',
                  'urls = ["https://hang.test/"]']  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _config(world: World, tmp: Path) -> Path:
    return world.write_config(tmp / "p.toml", f"https://ref.test:{world.web.https_port}/")


def _command(config: Path, targets: Path, db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "probe", "run", "--config", str(config), "--targets",
            str(targets), "--db", str(db), "--no-progress", *extra]  # fmt: skip


def _stored(db: Path) -> int:
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM measurements").fetchone()[0])
        except sqlite3.OperationalError:  # tables not created yet
            return 0


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return conn.execute(sql).fetchall()


def _ok(db: Path) -> None:
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]


def _hanging(world: World, tmp: Path, db: Path) -> subprocess.Popen[str]:
    """A real sweep that has stored six quick inputs and waits on a seventh (30 s DNS)."""
    targets = _targets(world, tmp / "hang.toml", QUICK[:6], hang=True)
    proc = subprocess.Popen(
        _command(_config(world, tmp), targets, db, "--dns-timeout", "30"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _stored(db) < 6 and proc.poll() is None:
        time.sleep(0.05)
    assert _stored(db) == 6 and proc.poll() is None
    return proc


def test_a_second_sweep_exits_5_and_kill_9_frees_the_database(world: World, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    first = _hanging(world, tmp_path, db)
    try:
        quick = _targets(world, tmp_path / "quick.toml", QUICK[:3])
        second = subprocess.run(
            _command(_config(world, tmp_path), quick, db),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 5, second.stderr
        assert len(second.stderr.splitlines()) == 1, second.stderr
        assert f"in use by another sweep: pid {first.pid} (probe run) since " in second.stderr
        assert second.stdout == ""
        assert _rows(db, "SELECT count(*) FROM runs") == [(1,)]  # the second wrote nothing
        first.kill()  # SIGKILL: no word on how it ended
        first.communicate(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -9
    _ok(db)
    third = subprocess.run(
        _command(_config(world, tmp_path), quick, db), capture_output=True, text=True, timeout=120
    )
    assert third.returncode == 0, third.stderr
    count = "SELECT count(*) FROM measurements m WHERE m.run_id = r.run_id"
    runs = _rows(db, f"SELECT status, ({count}) FROM runs r ORDER BY started_at")
    assert runs == [("aborted", 6), ("completed", 3)]  # the six that finished are kept
    _ok(db)


def test_a_long_read_transaction_and_a_held_write_lock_lose_nothing(
    world: World, tmp_path: Path
) -> None:
    db = tmp_path / "r.sqlite"
    config, quick = _config(world, tmp_path), _targets(world, tmp_path / "q.toml", QUICK)
    first = subprocess.run(_command(config, quick, db), capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    reader = sqlite3.connect(db, isolation_level=None)
    writer = sqlite3.connect(db, isolation_level=None, timeout=10, check_same_thread=False)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM measurements").fetchone() == (20,)
        # A writer (a prune, say) holds the write lock for 2 s as the sweep starts: its writes
        # wait (busy timeout 5 s) and go on.
        writer.execute("BEGIN IMMEDIATE")
        release = threading.Timer(2.0, writer.execute, ("COMMIT",))
        release.start()
        second = subprocess.run(
            _command(config, quick, db), capture_output=True, text=True, timeout=120
        )
        release.join()
        assert second.returncode == 0, second.stderr
        # The reader's snapshot is as it began; the sweep wrote past it into the WAL.
        assert reader.execute("SELECT count(*) FROM measurements").fetchone() == (20,)
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM measurements").fetchone() == (40,)
    finally:
        reader.close()
        writer.close()
    assert _rows(db, "SELECT status FROM runs") == [("completed",), ("completed",)]
    _ok(db)


def test_after_a_full_disk_the_database_is_whole_and_the_next_sweep_runs(
    world: World, tmp_path: Path
) -> None:
    names = [f"q{i % 20}.test" for i in range(80)]
    lines = []
    for i, name in enumerate(names):  # 80 inputs: many writes are queued when the disk fills
        lines += ["[[service]]", f'name = "s{i}"', 'category = "social"',
                  f'urls = ["https://{name}:{world.web.https_port}/?{i}"]']  # fmt: skip
    targets = tmp_path / "t.toml"
    targets.write_text("\n".join(lines) + "\n")
    config = _config(world, tmp_path)
    with tmpfs(tmp_path / "small", "384k") as small:
        db = small / "r.sqlite"
        full = subprocess.run(_command(config, targets, db), capture_output=True, timeout=120)
        assert full.returncode == 4, full.stderr
        assert b"disk is full" in full.stderr and b"Traceback" not in full.stderr
        _ok(db)
        resize(small, "16m")  # the volunteer makes room
        again = subprocess.run(_command(config, targets, db), capture_output=True, timeout=120)
        assert again.returncode == 0, again.stderr
        runs = _rows(db, "SELECT status FROM runs ORDER BY started_at")
        assert runs == [("failed",), ("completed",)]
        _ok(db)
