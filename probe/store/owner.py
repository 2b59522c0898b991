"""The sweep lock: one sweep at a time per database, an OS file lock beside its file.

Every sweep (``probe run``, and ``probe daemon`` for its whole life) holds an exclusive
flock(2) on ``<database>-lock``; a second sweep fails to take it and stops at once with
SweepBusy, naming the holder. Two sweeps at once would measure each other (their throughput
tests share the link), so the second is refused rather than queued. The kernel drops the lock
when its process dies, however it dies (kill -9 included), so:

- the holder knows that every run still marked "running" was abandoned (only sweeps begin
  runs, and it has not begun its own yet): it marks them "aborted";
- a reader that finds the lock free knows the same, and shows them "aborted" without writing.

Other writers (``probe prune``) take no lock: they begin no run, and SQLite's own locking
with the busy timeout orders their short transactions against a sweep's.

The file holds one JSON line naming the holder ({"pid", "command", "since"}; nothing about
the person: the command is a fixed name such as "probe run", never the argument list, which
may hold paths under their home), then zeros up to RESERVE_BYTES. That space, allocated and
not sparse, is a reserve: given back when a write fails, so that on a full disk the run can
still be marked "failed" (ballast, as databases keep for the same reason).

A database given as a URL (PostgreSQL) is locked the same way, by a file in the user's data
directory named by a hash of the URL (paths.url_lock_file): it keeps this machine's sweeps
apart, which is what the lock is for; sweeps of other machines into the same server are other
vantages, and their "running" runs are not this lock's to abort (the opener marks none).

Limits: flock is local to one machine (not NFS-safe).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

from probe.store.errors import StoreError
from probe.store.paths import database_file, url_lock_file

RESERVE_BYTES = 64 * 1024  # enough WAL frames to record how a run ended
# A reader's probe of the lock (sweep_alive) holds it for microseconds; a sweep that finds it
# taken looks again for this long before it calls the database busy.
PATIENCE_S = 0.5
_HEADER_MAX = 512


def lock_path(database: Path) -> Path:
    """The lock file of a database file."""
    return Path(f"{database}-lock")


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a sweep lock, as it wrote itself into the lock file."""

    pid: int | None
    command: str | None
    since: dt.datetime | None

    def describe(self) -> str:
        """'pid 123 (probe run) since 2026-12-01 19:20:03 UTC', or what is known of it."""
        if self.pid is None:
            return "another process (it has not said which)"
        since = f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        return f"pid {self.pid} ({self.command or 'unknown command'}){since}"


class SweepBusy(StoreError):
    """Another sweep holds this database's lock."""

    def __init__(self, database: Path, holder: Holder, label: str | None = None) -> None:
        self.database = database
        self.holder = holder
        super().__init__(
            f"database {label or database} is in use by another sweep: {holder.describe()}; "
            "two sweeps at once would measure each other's traffic, so this one did not start "
            f"(wait for that one to end, or stop it; the lock is {lock_path(database)})"
        )


def _header(holder: Holder) -> bytes:
    since = holder.since.strftime("%Y-%m-%dT%H:%M:%SZ") if holder.since else None
    record = {"pid": holder.pid, "command": holder.command, "since": since}
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def _parse_header(raw: bytes) -> Holder:
    line = raw.split(b"\n", 1)[0].split(b"\0", 1)[0]
    try:
        data = json.loads(line)
        pid, command = int(data["pid"]), str(data["command"])
        since = dt.datetime.strptime(data["since"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except (ValueError, TypeError, KeyError):
        return Holder(None, None, None)  # being written, or a file of an older probe
    return Holder(pid, command, since)


class SweepLock:
    """The exclusive lock one sweep holds; get it from sweep_lock()."""

    def __init__(self, database: Path, fd: int, holder: Holder, header_len: int) -> None:
        self.database = database  # the file (or, for a URL, the lock's own base name)
        self.holder = holder
        self._fd: int | None = fd
        self._header_len = header_len

    @classmethod
    def acquire(cls, database: Path, command: str, label: str | None = None) -> SweepLock:
        """Take the lock of ``database`` (creating the file) or raise SweepBusy (naming the
        database as ``label`` when given: a URL without its password)."""
        path = lock_path(database)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                _lock_patiently(fd, database, label)
                if _same_file(fd, path):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # removed by a holder that gave up between our open and lock: again
        holder = Holder(os.getpid(), command, dt.datetime.now(dt.UTC).replace(microsecond=0))
        header = _header(holder)
        with contextlib.suppress(OSError):  # a full disk: no header, no reserve; still ours
            os.ftruncate(fd, 0)
            os.pwrite(fd, header, 0)
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        return cls(database, fd, holder, len(header))

    @property
    def held(self) -> bool:
        """Whether this lock is still held."""
        return self._fd is not None

    def free_reserve(self) -> bool:
        """Give the reserve's space back to the file system; whether there was any."""
        if self._fd is None:
            return False
        try:
            if os.fstat(self._fd).st_size <= self._header_len:
                return False
            os.ftruncate(self._fd, self._header_len)  # the holder's line stays readable
        except OSError:
            return False
        return True

    def release(self) -> None:
        """Drop the lock (closing the file drops it too)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _lock_patiently(fd: int, database: Path, label: str | None) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = _parse_header(os.pread(fd, _HEADER_MAX, 0))
                raise SweepBusy(database, holder, label) from None
            time.sleep(0.02)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def sweep_lock(database: str | None, command: str) -> Iterator[SweepLock | None]:
    """Hold the sweep lock of a database (a path or URL, None: the default) for the block.

    ``command`` names the holder in the file and in a refused sweep's message ("probe run",
    "probe daemon"). Raises SweepBusy when another sweep holds it, StoreError when the lock
    cannot be made. A URL other than SQLite's is locked by a file of its own
    (paths.url_lock_file); an in-memory database yields None: nothing to lock. Missing
    directories are created (the database will be created there); if the database still
    does not exist on leaving, the lock file and those directories go.
    """
    file = database_file(database)
    if file is None:
        with _url_lock(database, command) as url_lock:
            yield url_lock
        return
    created = [p for p in reversed(file.parents) if not p.exists()]
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        lock = SweepLock.acquire(file, command)
    except OSError as exc:
        _remove(created)
        raise StoreError(f"cannot lock database {file}: {exc}") from exc
    except BaseException:
        _remove(created)
        raise
    try:
        yield lock
    finally:
        if not file.exists():  # it failed to open: leave nothing behind (still locked here)
            with contextlib.suppress(OSError):
                lock_path(file).unlink()
            lock.release()
            _remove(created)
        lock.release()


@contextlib.contextmanager
def _url_lock(database: str | None, command: str) -> Iterator[SweepLock | None]:
    key = url_lock_file(database) if database is not None else None
    if key is None or database is None:
        yield None
        return
    label = make_url(database).render_as_string(hide_password=True)
    try:
        key.parent.mkdir(parents=True, exist_ok=True)
        lock = SweepLock.acquire(key, command, label)
    except OSError as exc:
        raise StoreError(f"cannot lock database {label} (in {key.parent}): {exc}") from exc
    try:
        yield lock
    finally:
        lock.release()


def _remove(directories: list[Path]) -> None:
    for directory in reversed(directories):
        with contextlib.suppress(OSError):
            directory.rmdir()


def sweep_alive(database: Path) -> bool:
    """Whether some sweep holds the database's lock; opens the lock file read-only."""
    try:
        fd = os.open(lock_path(database), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # no sweep of this version ever ran here (or a copy left it behind)
    except OSError:
        return True  # cannot tell: never call a run abandoned on a guess
    try:
        # Shared, so readers never stop each other; flock ignores the open mode, so this
        # works on read-only media too.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return False


def lock_holder(database: Path) -> Holder | None:
    """Who holds the sweep lock of ``database`` now (``probe status``), or None if nobody."""
    if not sweep_alive(database):
        return None
    try:
        with lock_path(database).open("rb") as f:
            return _parse_header(f.read(_HEADER_MAX))
    except OSError:
        return Holder(None, None, None)
