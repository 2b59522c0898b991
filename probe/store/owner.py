"""Who owns the runs marked "running": an OS file lock beside an SQLite database.

Every process that opens the database to write (a sweep) holds a shared flock(2) on
``<database>-lock`` until it closes the database; the kernel drops it when the process dies,
however it dies (kill -9 included). So a later opener that can take the lock exclusively
knows that no writer is alive, and that every run still marked "running" was abandoned.
Nothing identifying is stored: the lock file holds only zeros.

The lock file is also a reserve: a writer makes it RESERVE_BYTES long (allocated, not
sparse) and gives the space back when a write fails, so that on a full disk the run can
still be marked "failed" (ballast, as databases keep for the same reason).

Limits: while another writer is alive nobody can tell its runs from abandoned ones, so those
wait for an open with no writer alive; flock is local to one machine (not NFS-safe); a
database given as a URL other than a file has no lock (PostgreSQL would use advisory locks).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

RESERVE_BYTES = 64 * 1024  # enough WAL frames to record how a run ended


def lock_path(database: Path) -> Path:
    """The lock file of a database file."""
    return Path(f"{database}-lock")


class WriterLock:
    """The shared lock a writer holds for as long as it has the database open."""

    def __init__(self, fd: int, sole: bool) -> None:
        self._fd: int | None = fd
        self.sole = sole  # True: no other writer was alive when this one took the lock

    @classmethod
    def acquire(cls, database: Path) -> WriterLock:
        """Take the lock (creating its file); ``sole`` says whether no one else held it."""
        fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                sole = True
            except BlockingIOError:
                sole = False
                fcntl.flock(fd, fcntl.LOCK_SH)
        except BaseException:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # no room for a reserve: none (the disk is full)
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        return cls(fd, sole)

    def share(self) -> None:
        """Let other writers in, once abandoned runs are marked (a writer begins no run before)."""
        if self._fd is not None and self.sole:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def free_reserve(self) -> bool:
        """Give the reserve's space back to the file system; whether there was any."""
        if self._fd is None:
            return False
        try:
            if os.fstat(self._fd).st_size == 0:
                return False
            os.ftruncate(self._fd, 0)
        except OSError:
            return False
        return True

    def release(self) -> None:
        """Drop the lock (closing the file drops it too)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def writer_alive(database: Path) -> bool:
    """Whether some process holds the database open to write; opens the lock file read-only."""
    try:
        fd = os.open(lock_path(database), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # no writer of this version ever opened it here (or a copy left it behind)
    except OSError:
        return True  # cannot tell: never call a run abandoned on a guess
    try:
        # flock ignores the open mode, so this works on read-only media too.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return False
