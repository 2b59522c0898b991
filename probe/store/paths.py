"""Where a database lives: the default file, and the file (if any) behind a path or URL.

The sweep lock (owner.py) and the opener (database.py) resolve a target the same way here,
so a lock is always taken beside the file that is then opened.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import platformdirs
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from probe.store.errors import StoreError

APP_NAME = "blocking-probe"


def default_database_path() -> Path:
    """Where the embedded database lives when none is given: the user's data directory."""
    return platformdirs.user_data_path(APP_NAME) / "results.sqlite"


def database_file(target: str | None) -> Path | None:
    """The absolute SQLite file a path or URL names (None: the default file); None when the
    target is no file (":memory:", PostgreSQL)."""
    if target is None:
        return default_database_path().absolute()
    if "://" not in target:
        return Path(target).expanduser().absolute()
    try:
        url = make_url(target)
    except ArgumentError as exc:
        raise StoreError(f"{target!r} is not a database URL: {exc}") from exc
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database).expanduser().absolute()


def url_lock_file(target: str) -> Path | None:
    """Where this machine's sweeps into a database that is no file (PostgreSQL) take their
    lock: a file named by a hash of the URL without its password, in the user's data
    directory (the lock keeps the sweeps of one machine apart; other machines writing to the
    same server are other vantages). None where there is nothing to share (":memory:")."""
    try:
        url = make_url(target)
    except ArgumentError as exc:
        raise StoreError(f"{target!r} is not a database URL: {exc}") from exc
    if url.get_backend_name() == "sqlite":
        return None
    # What names the database, not how to log in to it: with a password or not, one lock.
    name = repr((url.get_backend_name(), url.username, url.host, url.port, url.database,
                 sorted(url.query.items())))  # fmt: skip
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    return platformdirs.user_data_path(APP_NAME) / "locks" / f"{url.get_backend_name()}-{digest}"
