"""The synchronous store: opening a database (and bringing its schema up to date), writing
runs, and the read methods the CLI calls (queries.py holds those queries).

Used directly by the CLI, and from AsyncWriter's one worker thread during a sweep; never
from inside the event loop. Every database failure leaves here as StoreError.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, insert, make_url, update
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from measurements.observations import to_jsonable
from probe.classify.verdict import Location, MeasurementRecord, RunInfo
from probe.store import inserts, partitions, queries
from probe.store.errors import StoreError, reason
from probe.store.models import RUN_STATUSES, Run
from probe.store.owner import SweepLock, sweep_alive
from probe.store.paths import APP_NAME, database_file, default_database_path, url_lock_file
from probe.store.rows import (
    ExportRow,
    MeasurementDetail,
    MeasurementRow,
    RunSummary,
    location_values,
    run_values,
)
from probe.store.schema import Upgrade, bring_to_head, check_readable
from probe.store.sqlite_files import (
    SQLITE_MAGIC,
    add_sqlite_pragmas,
    check_sqlite_path,
    make_parents,
)

__all__ = ["APP_NAME", "Database", "StoreError", "default_database_path", "open_database"]

# The lock file is not here: it belongs to sweep_lock(), which removes it itself.
_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def open_database(
    target: str | None = None, *, read_only: bool = False, sweep: SweepLock | None = None
) -> Database:
    """Open the database at a path or SQLAlchemy URL (None: the default file).

    To write, a new database and its directory are created. A sweep passes the lock it
    holds (owner.sweep_lock() of the same target): runs that an earlier sweep abandoned are
    then marked "aborted", and the lock's reserve serves finish_run on a full disk. Other
    writers (prune) pass none. Read-only, nothing is ever created or changed: a missing
    database is a StoreError.
    """
    if sweep is not None and (read_only or sweep.database != _lock_base(target)):
        raise ValueError(f"the sweep lock of {sweep.database} does not fit this open")
    if target is None:
        return _open_file(default_database_path(), read_only, sweep)
    if "://" not in target:
        return _open_file(Path(target).expanduser(), read_only, sweep)
    try:
        url = make_url(target)
    except ArgumentError as exc:
        raise StoreError(f"{target!r} is not a database URL: {exc}") from exc
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            return _open_file(Path(database).expanduser(), read_only, sweep)
        # One shared connection: every new connection to ":memory:" is a new, empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        add_sqlite_pragmas(engine, read_only=read_only)
        label = url.render_as_string(hide_password=True)
        return _initialise(engine, label, keep_connection=True, read_only=read_only)
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use database {url.render_as_string()}: {exc}") from exc
    return _initialise(engine, url.render_as_string(hide_password=True), read_only=read_only)


def _lock_base(target: str | None) -> Path | None:
    """What sweep_lock() locks for ``target`` (a URL's lock serves only to keep this
    machine's sweeps apart: the opener does not use it)."""
    file = database_file(target)
    if file is None and target is not None:
        return url_lock_file(target)
    return file


def _open_file(path: Path, read_only: bool, sweep: SweepLock | None) -> Database:
    return _open_sqlite_read_only(path) if read_only else _open_sqlite_file(path, sweep)


def _open_sqlite_read_only(path: Path) -> Database:
    """Open an existing SQLite file without creating anything, on read-only media too."""
    path = path.absolute()
    label = str(path)
    try:
        if not path.exists():
            raise StoreError(f"no database at {label} (a sweep creates it: probe run)")
        if path.is_dir():
            raise StoreError(f"database {label} is a directory")
        with path.open("rb") as f:
            header = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"cannot read database {label}: {exc}") from exc
    if header != SQLITE_MAGIC:
        raise StoreError(f"{label} is not an SQLite database")
    quoted = urllib.parse.quote(label)
    if Path(f"{path}-wal").exists():
        # A writer is connected, or died with commits still in the WAL: read through it.
        # The -wal (and so normally the -shm) exist already, so mode=ro creates nothing.
        uri = f"file:{quoted}?mode=ro"
    else:
        # No WAL: no connection is open and the file holds every commit. mode=ro would
        # create -wal and -shm (and fail on read-only media); immutable reads the file alone
        # and locks nothing. A sweep that starts meanwhile writes to its own WAL and copies
        # into the file only at a checkpoint (1000 pages, or when it closes), so only a read
        # that outlasts a whole sweep could see the file change under it.
        uri = f"file:{quoted}?immutable=1"
    engine = create_engine(
        "sqlite://",
        creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
    )
    add_sqlite_pragmas(engine, read_only=True)
    return _initialise(engine, label, read_only=True, file=path)


def _open_sqlite_file(path: Path, sweep: SweepLock | None) -> Database:
    """Check the path before SQLite touches it, then open; on failure leave nothing new behind."""
    path = path.absolute()
    label = str(path)
    try:
        existed = path.exists()
    except OSError as exc:  # a name too long, a loop of links...
        raise StoreError(f"cannot open database {label}: {exc}") from exc
    created_dirs = make_parents(path)
    try:
        try:
            check_sqlite_path(path, existed)
            engine = create_engine(URL.create("sqlite", database=label))
            add_sqlite_pragmas(engine)
            return _initialise(engine, label, file=path, sweep=sweep)
        except OSError as exc:
            raise StoreError(f"cannot open database {label}: {exc}") from exc
    except BaseException:
        if not existed:
            for suffix in _SIDE_FILES:
                # Cleanup must not hide the real error (it may fail for the same reason).
                with contextlib.suppress(OSError):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        for directory in reversed(created_dirs):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


def _initialise(
    engine: Engine,
    label: str,
    *,
    keep_connection: bool = False,
    read_only: bool = False,
    file: Path | None = None,
    sweep: SweepLock | None = None,
) -> Database:
    """Create, check or upgrade the schema; a sweep then marks the runs abandoned before it."""
    abandoned = False
    upgrade: Upgrade | None = None
    try:
        if read_only:
            check_readable(engine, label)
            # Nothing may be written, so abandoned runs are only shown as "aborted".
            abandoned = file is not None and not sweep_alive(file)
        else:
            upgrade = bring_to_head(engine, label, file)
            if sweep is not None:
                # The lock is ours and our run has not begun: every "running" run is dead.
                _mark_abandoned(engine)
    except StoreError:
        engine.dispose()
        raise
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"cannot open database {label}: {reason(exc)}") from exc
    if not keep_connection:
        # Drop the connection made on the opener's thread: the writer thread makes its own.
        engine.dispose()
    flags = {"abandoned": abandoned, "read_only": read_only}
    return Database(engine, label, sweep=sweep, upgrade=upgrade, file=file, **flags)


def _mark_abandoned(engine: Engine) -> None:
    """Runs still "running" when no sweep is alive were abandoned (kill -9, power loss)."""
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.c.status == "running").values(status="aborted"))


class Database:
    """A results database; get one from open_database()."""

    def __init__(
        self,
        engine: Engine,
        label: str,
        *,
        sweep: SweepLock | None = None,
        abandoned: bool = False,
        upgrade: Upgrade | None = None,
        file: Path | None = None,
        read_only: bool = False,
    ) -> None:
        self._engine = engine
        self._file = file
        self._read_only = read_only
        self._label = label
        self._closed = False
        self._sweep = sweep  # the caller's: its reserve serves finish_run; never released here
        self._abandoned = abandoned
        self._upgrade = upgrade

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and the collector; not for ad-hoc writes)."""
        return self._engine

    @property
    def label(self) -> str:
        """The path or password-free URL, for messages."""
        return self._label

    @property
    def file(self) -> Path | None:
        """The SQLite file, or None (a URL other than a file)."""
        return self._file

    @property
    def read_only(self) -> bool:
        """Whether this open may write."""
        return self._read_only

    @property
    def abandoned(self) -> bool:
        """Read-only: no sweep is alive, so a "running" run is shown as "aborted"."""
        return self._abandoned

    @property
    def upgrade(self) -> Upgrade | None:
        """The upgrade this open made (and where its backup is), or None."""
        return self._upgrade

    @contextlib.contextmanager
    def connect(self, action: str) -> Iterator[Connection]:
        """A connection for reads (rolled back at the end) whose database errors surface as
        StoreError naming the database."""
        if self._closed:
            raise StoreError(f"database {self._label} is closed")
        try:
            with self._engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"{action} failed on database {self._label}: {reason(exc)}") from exc

    @contextlib.contextmanager
    def begin(self, action: str) -> Iterator[Connection]:
        """A connection in a transaction, committed at the end unless an error leaves it
        (then rolled back, and a database error surfaces as StoreError)."""
        with self.connect(action) as conn, conn.begin():
            yield conn

    def begin_run(self, info: RunInfo) -> None:
        """Record that a sweep started (status "running")."""
        with self.begin("begin_run") as conn:
            conn.execute(insert(Run).values(run_values(info)))

    def record(self, rec: MeasurementRecord) -> int:
        """Store one measurement and its evidence in one transaction; return its id."""
        return self.record_many((rec,))[0]

    def record_many(self, recs: Sequence[MeasurementRecord]) -> list[int]:
        """Store measurements and their evidence in one transaction; their ids, in order."""
        # PostgreSQL: the months' partitions first (months this process knows: no query).
        partitions.ensure(self._engine, [rec.measured_at for rec in recs])
        with self.begin("record") as conn:
            return inserts.insert_records(conn, recs)

    def finish_run(
        self,
        run_id: str,
        status: str,
        counts: Mapping[str, Any] | None = None,
        *,
        finished_at: dt.datetime | None = None,
    ) -> None:
        """Record how a sweep ended, and the counts it reported."""
        if status not in RUN_STATUSES:
            raise ValueError(f"run status {status!r} is not one of {RUN_STATUSES}")
        values = {
            "status": status,
            "finished_at": finished_at or dt.datetime.now(dt.UTC),
            "counts": to_jsonable(dict(counts)) if counts is not None else None,
        }
        try:
            self._update_run(run_id, values)
        except StoreError:
            # Perhaps the disk is full: give back the lock file's reserve, and try once more
            # so the run says how it ended rather than being found "aborted" later.
            if self._sweep is None or not self._sweep.free_reserve():
                raise
            self._update_run(run_id, values)

    def set_location(self, run_id: str, location: Location) -> None:
        """Record where the sweep measured, found after it began (probe.engine.location)."""
        self._update_run(run_id, location_values(location))

    def _update_run(self, run_id: str, values: Mapping[str, Any]) -> None:
        with self.begin("finish_run") as conn:
            result = conn.execute(update(Run).where(Run.c.run_id == run_id).values(**values))
            if result.rowcount != 1:
                raise StoreError(f"no run {run_id} in database {self._label}")

    def list_runs(self, limit: int = 20) -> list[RunSummary]:
        """The most recent runs, newest first, with their measurement counts."""
        return queries.list_runs(self, limit)

    def get_run(self, run_id_or_prefix: str) -> RunSummary | None:
        """The run with this id or unique id prefix (at least 6 hex digits); None if none."""
        return queries.get_run(self, run_id_or_prefix)

    def get_measurement(self, measurement_id: int) -> MeasurementDetail | None:
        """One measurement with its evidence; None if there is no such id."""
        return queries.get_measurement(self, measurement_id)

    def measurements_of_run(self, run_id: str) -> list[MeasurementRow]:
        """The measurements of one run (exact id), in the order they were measured."""
        return queries.measurements_of_run(self, run_id)

    def iter_export_rows(
        self,
        since: dt.datetime | None = None,
        service: str | None = None,
        run_id: str | None = None,
        until: dt.datetime | None = None,
    ) -> Iterator[ExportRow]:
        """Stream measurements with their run's vantage, by measured_at, in [since, until)."""
        return queries.export_rows(self, since, service, run_id, until)

    def close(self) -> None:
        """Close every pooled connection; later calls raise StoreError."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()
