"""The sweep lock on real files and real processes: one sweep per database, the holder named."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from probe.store import open_database
from probe.store.owner import PATIENCE_S, SweepBusy, SweepLock, lock_holder, sweep_alive, sweep_lock

ROOT = Path(__file__).resolve().parent.parent.parent


def test_a_second_sweep_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    with sweep_lock(str(db), "probe daemon") as lock:
        assert lock is not None and lock.holder.pid == os.getpid()
        open_database(str(db), sweep=lock).close()
        started = time.monotonic()
        with pytest.raises(SweepBusy) as busy, sweep_lock(str(db), "probe run"):
            pass
        assert time.monotonic() - started < PATIENCE_S + 2  # at once, give or take a look
        assert busy.value.holder == lock.holder
        message = str(busy.value)
        assert f"pid {os.getpid()} (probe daemon) since " in message and str(db) in message
        assert lock_holder(db) == lock.holder and sweep_alive(db)
    assert lock_holder(db) is None and not sweep_alive(db)
    with sweep_lock(str(db), "probe run") as again:  # free once the holder left
        assert again is not None and again.holder.command == "probe run"


def test_the_lock_file_names_only_pid_command_and_time(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    with sweep_lock(str(db), "probe run") as lock:
        assert lock is not None
        open_database(str(db), sweep=lock).close()
        line = Path(f"{db}-lock").read_bytes().split(b"\n")[0]
    assert sorted(json.loads(line)) == ["command", "pid", "since"]


def test_a_readers_probe_does_not_refuse_a_sweep(tmp_path: Path) -> None:
    """A reader's shared probe of the lock, held a moment, only delays a sweep's lock."""
    db = tmp_path / "r.sqlite"
    Path(f"{db}-lock").touch()
    fd = os.open(f"{db}-lock", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    timer = threading.Timer(PATIENCE_S / 5, os.close, (fd,))
    timer.start()
    try:
        lock = SweepLock.acquire(db, "probe run")
        lock.release()
    finally:
        timer.join()


def test_kill_9_of_the_holder_frees_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    code = (
        "import sys, time\n"
        "from probe.store.owner import sweep_lock\n"
        "with sweep_lock(sys.argv[1], 'probe run'):\n"
        "    open(sys.argv[1], 'wb').close()\n"  # the database exists: the lock file stays
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        with pytest.raises(SweepBusy, match=f"pid {proc.pid} \\(probe run\\)"):
            SweepLock.acquire(db, "probe run")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not sweep_alive(db)
    SweepLock.acquire(db, "probe run").release()


def test_a_failed_open_leaves_no_lock_file_and_no_new_directory(tmp_path: Path) -> None:
    db = tmp_path / "new" / "deeper" / "r.sqlite"
    with pytest.raises(RuntimeError), sweep_lock(str(db), "probe run"):
        assert Path(f"{db}-lock").exists()
        raise RuntimeError("the open failed")
    assert list(tmp_path.iterdir()) == []


def test_no_lock_for_an_in_memory_database() -> None:
    with sweep_lock("sqlite://", "probe run") as lock:
        assert lock is None


def test_a_postgresql_database_is_locked_per_machine_naming_it_without_password(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    secret = postgres_url.replace("postgres@", "postgres:s3cret@")
    with sweep_lock(postgres_url, "probe daemon") as lock:
        assert lock is not None and lock.held
        assert lock.database.parent == tmp_path / "data" / "blocking-probe" / "locks"
        # The same database with its password given: the same lock, and no password shown.
        with pytest.raises(SweepBusy) as refused:
            with sweep_lock(secret, "probe run"):
                pass
        message = str(refused.value)
        assert "s3cret" not in message and "probe daemon" in message
        assert postgres_url.split("@")[1] in message
        with sweep_lock(postgres_url + "_other", "probe run") as other:  # another database
            assert other is not None and other.database != lock.database
        # The sweep opens its database with the lock it holds (and marks no one's runs).
        db = open_database(postgres_url, sweep=lock)
        db.close()
    with sweep_lock(postgres_url, "probe run") as again:  # released: free
        assert again is not None


def test_probe_run_into_a_locked_postgresql_database_exits_5(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from probe.cli import main

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    targets = tmp_path / "t.toml"
    targets.write_text('[[service]]\nname = "s"\ncategory = "social"\nurls = ["https://s.test/"]\n')
    with sweep_lock(postgres_url, "probe daemon"):
        code = main(["run", "--db", postgres_url, "--targets", str(targets), "--no-progress"])
    assert code == 5
    assert "in use by another sweep" in capsys.readouterr().err


def test_a_lock_opens_only_its_own_database(tmp_path: Path) -> None:
    with sweep_lock(str(tmp_path / "a.sqlite"), "probe run") as lock:
        with pytest.raises(ValueError, match="does not fit"):
            open_database(str(tmp_path / "b.sqlite"), sweep=lock)
        with pytest.raises(ValueError, match="does not fit"):
            open_database(str(tmp_path / "a.sqlite"), read_only=True, sweep=lock)
