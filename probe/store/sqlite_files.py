"""An SQLite database file's place and connections: its directory made (and unmade when
that fails), the file checked before SQLite touches it, the pragmas every connection gets."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from probe.store.errors import StoreError

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 5000


def make_parents(path: Path) -> list[Path]:
    """Create the missing parent directories; return those created, outermost first."""
    missing = [p for p in reversed(path.parents) if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        for directory in reversed(missing):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise StoreError(f"cannot create the directory for database {path}: {exc}") from exc
    return missing


def check_sqlite_path(path: Path, existed: bool) -> None:
    """Refuse a directory, a non-SQLite file, or a place SQLite could not write to."""
    if path.is_dir():
        raise StoreError(f"database {path} is a directory")
    # SQLite in WAL mode writes -wal and -shm files beside the database, so the directory counts.
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(f"database {path}: directory {path.parent} is not writable")
    if not existed:
        return
    if not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"database {path} is not readable and writable")
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"cannot read database {path}: {exc}") from exc
    # An empty file is a valid, new SQLite database; anything else must carry the magic.
    if header and header != SQLITE_MAGIC:
        raise StoreError(f"{path} is not an SQLite database")


def add_sqlite_pragmas(engine: Engine, *, read_only: bool = False) -> None:
    """Set WAL, a busy timeout and foreign keys on every new SQLite connection."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not read_only:  # setting the journal mode writes to the file
                # A new, empty file only (on others setting it writes the header): pages
                # freed by probe prune can then be given back in short steps (retention.py).
                if cursor.execute("PRAGMA page_count").fetchone()[0] == 0:
                    cursor.execute("PRAGMA auto_vacuum = INCREMENTAL")
                # WAL lets a reader (probe list, export) run while a sweep writes.
                cursor.execute("PRAGMA journal_mode = WAL")
                # In WAL mode NORMAL syncs at checkpoints, not at every commit: a crash of
                # the probe loses nothing committed, a power cut may lose the last commits
                # but never corrupts the file. FULL's sync per commit was a sweep's largest
                # write cost, and wears a Raspberry Pi's SD card (issue 13).
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()
