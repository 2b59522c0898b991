"""The synchronous store: opening (and checking) a database, writing runs, reading results.

Used directly by the CLI, and from AsyncWriter's one worker thread during a sweep; never
from inside the event loop. Every database failure leaves here as StoreError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import (
    URL,
    Engine,
    create_engine,
    event,
    func,
    insert,
    inspect,
    make_url,
    select,
    update,
)
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from measurements.observations import to_jsonable
from probe.classify.verdict import MeasurementRecord, RunInfo
from probe.store.models import (
    READABLE_VERSIONS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    Base,
    Evidence,
    ExportRow,
    Measurement,
    MeasurementDetail,
    MeasurementRow,
    Meta,
    Run,
    RunSummary,
    evidence_data,
    measurement_from_record,
    measurement_row,
    run_from_info,
    run_summary,
)
from probe.store.owner import WriterLock, writer_alive

APP_NAME = "blocking-probe"
SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 5000
MIN_PREFIX = 6  # of a run id; shorter prefixes collide too easily to be meant
EXPORT_BATCH = 500
_HEX = frozenset("0123456789abcdef")
_SIDE_FILES = ("", "-wal", "-shm", "-journal", "-lock")


class StoreError(Exception):
    """The database cannot be opened, has the wrong schema, or a read or write failed."""


def default_database_path() -> Path:
    """Where the embedded database lives when none is given: the user's data directory."""
    return platformdirs.user_data_path(APP_NAME) / "results.sqlite"


def open_database(target: str | None = None, *, read_only: bool = False) -> Database:
    """Open the database at a path or SQLAlchemy URL (None: the default file).

    To write (a sweep), a new database and its directory are created, and runs that an
    earlier writer abandoned are marked "aborted". Read-only, nothing is ever created or
    changed: a missing database is a StoreError.
    """
    if target is None:
        return _open_file(default_database_path(), read_only)
    if "://" not in target:
        return _open_file(Path(target).expanduser(), read_only)
    try:
        url = make_url(target)
    except ArgumentError as exc:
        raise StoreError(f"{target!r} is not a database URL: {exc}") from exc
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            return _open_file(Path(database).expanduser(), read_only)
        # One shared connection: every new connection to ":memory:" is a new, empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        _add_sqlite_pragmas(engine, read_only=read_only)
        label = url.render_as_string(hide_password=True)
        return _initialise(engine, label, keep_connection=True, read_only=read_only)
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use database {url.render_as_string()}: {exc}") from exc
    return _initialise(engine, url.render_as_string(hide_password=True), read_only=read_only)


def _open_file(path: Path, read_only: bool) -> Database:
    return _open_sqlite_read_only(path) if read_only else _open_sqlite_file(path)


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
    _add_sqlite_pragmas(engine, read_only=True)
    return _initialise(engine, label, read_only=True, file=path)


def _open_sqlite_file(path: Path) -> Database:
    """Check the path before SQLite touches it, then open; on failure leave nothing new behind."""
    path = path.absolute()
    label = str(path)
    try:
        existed = path.exists()
    except OSError as exc:  # a name too long, a loop of links...
        raise StoreError(f"cannot open database {label}: {exc}") from exc
    created_dirs = _make_parents(path)
    try:
        try:
            _check_sqlite_path(path, existed)
            engine = create_engine(URL.create("sqlite", database=label))
            _add_sqlite_pragmas(engine)
            return _initialise(engine, label, file=path)
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


def _make_parents(path: Path) -> list[Path]:
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


def _check_sqlite_path(path: Path, existed: bool) -> None:
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


def _add_sqlite_pragmas(engine: Engine, *, read_only: bool = False) -> None:
    """Set WAL, a busy timeout and foreign keys on every new SQLite connection."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not read_only:  # setting the journal mode writes to the file
                # WAL lets a reader (probe list, export) run while a sweep writes.
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()


def _initialise(
    engine: Engine,
    label: str,
    *,
    keep_connection: bool = False,
    read_only: bool = False,
    file: Path | None = None,
) -> Database:
    """Create or check (and migrate) the schema; a writer then takes the lock of a file."""
    lock: WriterLock | None = None
    abandoned = False
    try:
        if read_only:
            _check_readable(engine, label)
            # Nothing may be written, so abandoned runs are only shown as "aborted".
            abandoned = file is not None and not writer_alive(file)
        else:
            if _create_or_check(engine, label) == 1:
                _migrate_from_1(engine, label)
            if file is not None:
                try:
                    lock = WriterLock.acquire(file)
                except OSError as exc:
                    raise StoreError(f"cannot lock database {label}: {exc}") from exc
                if lock.sole:
                    _mark_abandoned(engine)
                lock.share()
    except StoreError:
        if lock is not None:
            lock.release()
        engine.dispose()
        raise
    except SQLAlchemyError as exc:
        if lock is not None:
            lock.release()
        engine.dispose()
        raise StoreError(f"cannot open database {label}: {_reason(exc)}") from exc
    if not keep_connection:
        # Drop the connection made on the opener's thread: the writer thread makes its own.
        engine.dispose()
    return Database(engine, label, lock=lock, abandoned=abandoned)


def _create_or_check(engine: Engine, label: str) -> int:
    """Create the tables of a new database; return the schema version found (or made)."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            # pysqlite runs DDL outside any transaction; an explicit (write-locking) BEGIN
            # makes creation atomic, and a second process opening a new file waits for it.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        tables = set(inspect(conn).get_table_names())
        if Meta.__tablename__ not in tables:
            ours = {t for t in Base.metadata.tables if t != Meta.__tablename__}
            if tables & ours:
                raise StoreError(
                    f"database {label} has probe tables but no schema version; "
                    "it was not made by this probe"
                )
            Base.metadata.create_all(conn)
            conn.execute(insert(Meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
            return SCHEMA_VERSION
        found = _version(conn)
        if found == str(SCHEMA_VERSION) or (found == "1" and engine.dialect.name == "sqlite"):
            return int(found)
        raise StoreError(
            f"database {label} has schema version {found}; this probe understands "
            f"{SCHEMA_VERSION}" + (" (and migrates 1 on SQLite only)" if found == "1" else "")
        )


def _version(conn: Any) -> str | None:
    found: str | None = conn.execute(
        select(Meta.value).where(Meta.key == "schema_version")
    ).scalar_one_or_none()
    return found


def _check_readable(engine: Engine, label: str) -> None:
    """Refuse, without writing, a database this probe cannot read."""
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        if Meta.__tablename__ not in tables:
            raise StoreError(f"database {label} has no probe tables (no schema version)")
        found = _version(conn)
    if found not in {str(v) for v in READABLE_VERSIONS}:
        raise StoreError(
            f"database {label} has schema version {found}; this probe reads "
            + ", ".join(str(v) for v in READABLE_VERSIONS)
        )


def _migrate_from_1(engine: Engine, label: str) -> None:
    """Version 1 to 2 on SQLite: rebuild runs, whose CHECK now allows failed and aborted.

    SQLite cannot alter a CHECK constraint. This is SQLite's documented rebuild (rename,
    create, copy, drop) with foreign keys off, so the measurements that point at runs stay
    put; one write transaction, so a crash leaves version 1 whole. Alembic will take this over.
    """
    with engine.connect() as conn:
        # Both pragmas are no-ops inside a transaction: set them before BEGIN.
        conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
        # Legacy renaming leaves measurements' REFERENCES runs pointing at the new table.
        conn.exec_driver_sql("PRAGMA legacy_alter_table = ON")
        conn.commit()
        try:
            with conn.begin():
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                if _version(conn) != "1":  # another process migrated it meanwhile
                    return
                conn.exec_driver_sql("ALTER TABLE runs RENAME TO runs_v1")
                conn.exec_driver_sql("DROP INDEX IF EXISTS ix_runs_started_at")
                runs = Base.metadata.tables[Run.__tablename__]
                runs.create(conn)
                columns = ", ".join(c.name for c in runs.columns)
                conn.exec_driver_sql(f"INSERT INTO runs ({columns}) SELECT {columns} FROM runs_v1")
                conn.exec_driver_sql("DROP TABLE runs_v1")
                if conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise StoreError(f"database {label}: migrating schema 1 to 2 broke a link")
                conn.execute(
                    update(Meta)
                    .where(Meta.key == "schema_version")
                    .values(value=str(SCHEMA_VERSION))
                )
        finally:
            conn.exec_driver_sql("PRAGMA legacy_alter_table = OFF")
            conn.exec_driver_sql("PRAGMA foreign_keys = ON")
            conn.commit()


def _mark_abandoned(engine: Engine) -> None:
    """Runs still "running" when no writer is alive were abandoned (kill -9, power loss)."""
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.status == "running").values(status="aborted"))


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's message when there is one (shorter than SQLAlchemy's wrapper)."""
    return str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)


class Database:
    """A results database; get one from open_database()."""

    def __init__(
        self,
        engine: Engine,
        label: str,
        *,
        lock: WriterLock | None = None,
        abandoned: bool = False,
    ) -> None:
        self._engine = engine
        self._label = label
        self._closed = False
        self._lock = lock  # held while open: says to later opens that this writer is alive
        self._abandoned = abandoned  # read-only: a "running" run has no live writer

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and the collector; not for ad-hoc writes)."""
        return self._engine

    @property
    def label(self) -> str:
        """The path or password-free URL, for messages."""
        return self._label

    @contextlib.contextmanager
    def session(self, action: str) -> Iterator[Session]:
        """A session whose database errors surface as StoreError naming the database."""
        if self._closed:
            raise StoreError(f"database {self._label} is closed")
        try:
            with Session(self._engine) as session:
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"{action} failed on database {self._label}: {_reason(exc)}") from exc

    def begin_run(self, info: RunInfo) -> None:
        """Record that a sweep started (status "running")."""
        run = run_from_info(info)
        with self.session("begin_run") as session, session.begin():
            session.add(run)

    def record(self, rec: MeasurementRecord) -> int:
        """Store one measurement and its evidence in one transaction; return its id."""
        measurement = measurement_from_record(rec)
        data = evidence_data(rec)
        with self.session("record") as session, session.begin():
            session.add(measurement)
            session.flush()  # assigns the id the evidence row points to
            measurement_id = measurement.id
            session.add(Evidence(measurement_id=measurement_id, data=data))
        return measurement_id

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
            if self._lock is None or not self._lock.free_reserve():
                raise
            self._update_run(run_id, values)

    def _update_run(self, run_id: str, values: Mapping[str, Any]) -> None:
        with self.session("finish_run") as session, session.begin():
            result = session.execute(update(Run).where(Run.run_id == run_id).values(**values))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise StoreError(f"no run {run_id} in database {self._label}")

    def list_runs(self, limit: int = 20) -> list[RunSummary]:
        """The most recent runs, newest first, with their measurement counts."""
        stmt = select(Run).order_by(Run.started_at.desc(), Run.run_id.desc()).limit(limit)
        with self.session("list_runs") as session:
            runs = list(session.scalars(stmt))
            return self._summaries(session, runs)

    def get_run(self, run_id_or_prefix: str) -> RunSummary | None:
        """The run with this id or unique id prefix (at least 6 hex digits); None if none."""
        prefix = run_id_or_prefix.strip().lower()
        if len(prefix) < MIN_PREFIX:
            raise StoreError(f"run id prefix {prefix!r} is shorter than {MIN_PREFIX} characters")
        if not set(prefix) <= _HEX:  # run ids are hex; this also keeps LIKE wildcards out
            return None
        stmt = select(Run).where(Run.run_id.startswith(prefix)).order_by(Run.run_id).limit(2)
        with self.session("get_run") as session:
            runs = list(session.scalars(stmt))
            if len(runs) > 1:
                raise StoreError(f"run id prefix {prefix!r} is ambiguous: give more characters")
            return self._summaries(session, runs)[0] if runs else None

    def _summaries(self, session: Session, runs: list[Run]) -> list[RunSummary]:
        """Detached summaries of runs, with per-verdict counts from one grouped query."""
        ids = [r.run_id for r in runs]
        per_run: dict[str, dict[str, int]] = {i: {} for i in ids}
        if ids:
            stmt = (
                select(Measurement.run_id, Measurement.verdict, func.count())
                .where(Measurement.run_id.in_(ids))
                .group_by(Measurement.run_id, Measurement.verdict)
            )
            for run_id, verdict, n in session.execute(stmt):
                per_run[run_id][verdict] = n
        summaries = [run_summary(r, per_run[r.run_id]) for r in runs]
        if self._abandoned:
            # What the next writer will record; a reader may not write it.
            summaries = [
                dataclasses.replace(s, status="aborted") if s.status == "running" else s
                for s in summaries
            ]
        return summaries

    def get_measurement(self, measurement_id: int) -> MeasurementDetail | None:
        """One measurement with its evidence; None if there is no such id."""
        stmt = (
            select(Measurement, Evidence.data)
            .outerjoin(Evidence, Evidence.measurement_id == Measurement.id)
            .where(Measurement.id == measurement_id)
        )
        with self.session("get_measurement") as session:
            found = session.execute(stmt).one_or_none()
            if found is None:
                return None
            return MeasurementDetail(row=measurement_row(found[0]), evidence=found[1] or {})

    def measurements_of_run(self, run_id: str) -> list[MeasurementRow]:
        """The measurements of one run (exact id), in the order they were measured."""
        stmt = (
            select(Measurement)
            .where(Measurement.run_id == run_id)
            .order_by(Measurement.measured_at, Measurement.id)
        )
        with self.session("measurements_of_run") as session:
            return [measurement_row(m) for m in session.scalars(stmt)]

    def iter_export_rows(
        self,
        since: dt.datetime | None = None,
        service: str | None = None,
        run_id: str | None = None,
    ) -> Iterator[ExportRow]:
        """Stream measurements with their run's vantage, by measured_at; a naive since is UTC."""
        stmt = select(
            Measurement.id.label("measurement_id"),
            Measurement.run_id,
            Measurement.service,
            Measurement.category,
            Measurement.input,
            Measurement.verdict,
            Measurement.layer,
            Measurement.detail,
            Measurement.rule,
            Measurement.measured_at,
            Measurement.duration_ms,
            Measurement.throughput_kbps,
            Measurement.baseline_kbps,
            Run.vantage_name,
            Run.network_type,
            Run.asn,
            Run.country,
        ).join(Run, Run.run_id == Measurement.run_id)
        if since is not None:
            if since.tzinfo is None:
                since = since.replace(tzinfo=dt.UTC)
            stmt = stmt.where(Measurement.measured_at >= since)
        if service is not None:
            stmt = stmt.where(Measurement.service == service)
        if run_id is not None:
            stmt = stmt.where(Measurement.run_id == run_id)
        stmt = stmt.order_by(Measurement.measured_at, Measurement.id)
        # Batches, not the whole table: an export may be far larger than memory.
        with self.session("export") as session:
            result = session.execute(stmt.execution_options(yield_per=EXPORT_BATCH))
            for r in result:
                yield ExportRow(**r._asdict())

    def close(self) -> None:
        """Close every pooled connection; later calls raise StoreError."""
        if not self._closed:
            self._closed = True
            try:
                self._engine.dispose()
            finally:
                if self._lock is not None:
                    self._lock.release()
