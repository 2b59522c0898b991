"""Retention: evidence past a window is deleted, verdict rows are kept, space is given back.

A measurement row (its verdict, layer, detail, rule, reason, timings and rates) is about a
tenth of its evidence, and it is what every query, export and report reads: it is kept for
ever. The evidence (every observation, what each control saw) is what a reader re-checks a
recent verdict with; past the window (storage.retention, 30 days by default) it is deleted
outright rather than summarised, because the measurement row already is its summary; and
that row's reason, a sentence written from the evidence, becomes PRUNED (_compact).

Space, on SQLite: the probe creates files with ``auto_vacuum = INCREMENTAL``, so the pages
freed here go back to the file system in short steps (``PRAGMA incremental_vacuum``, a few
MB per transaction) that a running sweep's writes interleave with, within the busy timeout.
A file created before (``auto_vacuum = NONE``) is converted once by a full VACUUM, which
rewrites the whole file and holds the write lock throughout: it is done only when nobody
sweeps (the caller holds the sweep lock, or can take it for the duration, so that no sweep
starts and then times out on the lock) and when the disk has room for a second copy;
otherwise it is skipped with the reason, and the freed pages are reused by later sweeps, so
the file stops growing anyway. On PostgreSQL evidence is partitioned by month
(partitions.py): a month wholly before the cutoff is dropped as one table (no row deleted
one by one, no bloat left), and only the month the cutoff falls in, and DEFAULT, are deleted
row by row; autovacuum reuses the space of those.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    Table,
    cast,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from probe.store import compact, partitions
from probe.store.database import Database, open_database
from probe.store.errors import StoreError, reason
from probe.store.models import Evidence, Measurement, Meta, Run
from probe.store.owner import SweepBusy, SweepLock, sweep_alive
from probe.store.paths import database_file

# What a row past the window keeps of its reason (see _compact).
PRUNED = "(pruned)"
# meta key: bytes of reasons shortened since the file was last rewritten (SQLite only).
COMPACTED_KEY = "compacted_bytes"
# A full VACUUM once the shortened rows hold back 1/REWRITE_SHARE of the file: rarely, as it
# rewrites the whole file. Hourly sweeps of the bundled list shorten about 0.17 MB of reasons
# a day while the file grows about 1 MB: the first rewrite comes after about 5 months.
REWRITE_SHARE = 16
# No window for the rest: nothing measured is older than this.
NO_CUTOFF = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
BATCH = 2000  # evidence rows per delete: a sweep's write waits at most one batch
VACUUM_STEP_PAGES = 1024  # pages given back per transaction (4 MiB at 4 KiB pages)


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What a prune did (or, dry, would do)."""

    database: str
    cutoff: dt.datetime  # evidence of measurements before this was deleted (min: none)
    accessible_cutoff: dt.datetime  # and of accessible verdicts before this
    evidence_deleted: int  # dry run: how many would be
    measurements_kept: int  # every verdict row, old and new
    runs_kept: int
    bytes_before: int | None  # the file and its -wal; None for a URL other than a file
    bytes_after: int | None
    reclaimed: str  # how space went back: "incremental vacuum", "vacuum", or why not
    dry_run: bool


def prune(
    store_or_url: Database | str | None,
    older_than: dt.timedelta | None,
    *,
    accessible_older_than: dt.timedelta | None = None,
    dry_run: bool = False,
    exclusive: bool = False,
    now: dt.datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PruneResult:
    """Delete the evidence of measurements older than ``older_than`` (None: none), and of
    accessible verdicts older than ``accessible_older_than`` (None: as the rest); give the
    space back.

    ``store_or_url``: an open Database (the daemon's), or a path/URL to open and close here
    (None: the default file). ``exclusive``: the caller holds the sweep lock and sweeps
    nothing meanwhile (the daemon between sweeps), so a full VACUUM may run if one is needed.
    ``progress(done, total)`` is called after each batch.
    """
    cut = Cutoffs.of(older_than, accessible_older_than, now or dt.datetime.now(dt.UTC))
    with _opened(store_or_url, dry_run) as db:
        before = _size(db.file)
        try:
            total = _count_old(db, cut)
            if dry_run:
                deleted, how = total, "nothing (dry run)"
            else:
                deleted = _delete_old(db, cut, total, progress)
                how = _reclaim(db, exclusive)
            kept, runs = _kept(db)
        except SQLAlchemyError as exc:
            raise StoreError(f"prune failed on database {db.label}: {reason(exc)}") from exc
        return PruneResult(
            db.label, cut.all, cut.accessible, deleted, kept, runs, before, _size(db.file),
            how, dry_run,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Evidence of a measurement before ``all`` goes, and of an accessible one before
    ``accessible`` (never later than ``all``)."""

    all: dt.datetime
    accessible: dt.datetime

    @classmethod
    def of(
        cls, older_than: dt.timedelta | None, accessible: dt.timedelta | None, now: dt.datetime
    ) -> Cutoffs:
        """The cutoffs of two windows (None: no window) measured back from ``now``."""
        for window in (older_than, accessible):
            if window is not None and window <= dt.timedelta(0):
                raise ValueError("a retention window must be positive")
        if older_than is None and accessible is None:
            raise ValueError("a prune needs a window")
        every = NO_CUTOFF if older_than is None else now - older_than
        own = every if accessible is None else now - accessible
        return cls(every, max(every, own))

    def where(self, rows: Table) -> ColumnElement[bool]:
        """The rows (measurements, or SQLite's results: _rows) whose evidence goes."""
        at, verdict = rows.c.measured_at, rows.c.verdict
        old = at < self.all
        if self.accessible == self.all:
            return old
        return old | ((verdict == "accessible") & (at < self.accessible))


def _rows(conn: Connection) -> Table:
    """Where the verdict rows are: SQLite's results (their times indexed), else measurements."""
    if compact.is_compact(conn):
        return compact.results()
    return Measurement


@contextlib.contextmanager
def _opened(store_or_url: Database | str | None, dry_run: bool) -> Iterator[Database]:
    if isinstance(store_or_url, Database):
        if store_or_url.read_only and not dry_run:
            raise StoreError(f"database {store_or_url.label} is open read-only: cannot prune")
        yield store_or_url
        return
    file = database_file(store_or_url)
    if file is not None and not file.is_file():  # a prune must not create one
        raise StoreError(f"no database at {file} (a sweep creates it: probe run)")
    try:
        db = open_database(store_or_url, read_only=dry_run)
    except StoreError as exc:
        if file is not None and _disk_full(file):  # SQLite says only "disk I/O error"
            raise StoreError(f"{exc}; the disk is full: free some space, then prune") from exc
        raise
    try:
        yield db
    finally:
        db.close()


def _disk_full(file: Path) -> bool:
    try:
        return os.statvfs(file.parent).f_bavail == 0
    except OSError:
        return False


def _old_ids(rows: Table, cut: Cutoffs, limit: int | None = None) -> Select[int]:
    query = (
        select(Evidence.c.measurement_id)
        .join(rows, rows.c.id == Evidence.c.measurement_id)
        .where(cut.where(rows))
    )
    return query.order_by(Evidence.c.measurement_id).limit(limit) if limit else query


def _count_old(db: Database, cut: Cutoffs) -> int:
    with db.engine.connect() as conn:
        return int(
            conn.scalar(select(func.count()).select_from(_old_ids(_rows(conn), cut).subquery()))
            or 0
        )


def _delete_old(
    db: Database, cut: Cutoffs, total: int, progress: Callable[[int, int], None] | None
) -> int:
    """Delete in batches, each its own transaction, so a sweep's writes are not held up."""
    deleted = _drop_old_months(db, cut.all, total, progress)
    while deleted < total:
        with db.engine.begin() as conn:
            ids = list(conn.scalars(_old_ids(_rows(conn), cut, BATCH)))
            if not ids:
                break
            conn.execute(delete(Evidence).where(Evidence.c.measurement_id.in_(ids)))
            _compact(conn, ids)
        deleted += len(ids)
        if progress is not None:
            progress(deleted, total)
    return deleted


def _drop_old_months(
    db: Database, cutoff: dt.datetime, total: int, progress: Callable[[int, int], None] | None
) -> int:
    """PostgreSQL: drop each evidence partition wholly before the cutoff, one transaction a
    month, after compacting the reasons of the rows it held; how many evidence rows went."""
    if db.engine.dialect.name != "postgresql":
        return 0
    with db.engine.connect() as conn:
        old = [
            (name, month)
            for name, month in partitions.months(conn, "evidence")
            if partitions.month_start(partitions.next_month(month)) <= cutoff
        ]
    deleted = 0
    for name, month in old:
        with db.engine.begin() as conn:
            # Its measurements' partition only (the time range prunes the others).
            bounds = {
                "start": partitions.month_start(month),
                "end": partitions.month_start(partitions.next_month(month)),
                "pruned": PRUNED,
            }
            conn.execute(
                text(
                    f"UPDATE measurements AS m SET reason = :pruned FROM {name} AS e "
                    "WHERE m.measured_at >= :start AND m.measured_at < :end "
                    "AND e.measurement_id = m.id AND e.measured_at = m.measured_at "
                    "AND m.reason <> :pruned"
                ),
                bounds,
            )
            deleted += int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
            conn.exec_driver_sql(f"DROP TABLE {name}")
        partitions.forget(db.engine)  # a late row of that month makes it again
        if progress is not None:
            progress(deleted, total)
    return deleted


def _compact(conn: Connection, ids: list[int]) -> None:
    """Shorten the verdict rows whose evidence just went: their reason becomes PRUNED.

    The reason is a sentence written from the evidence (addresses, byte counts, what each
    control saw), the longest text of a row and a quarter of it; with the evidence gone it
    can no longer be checked, and rule, detail, layer and verdict say what it said in
    closed vocabularies. Everything else of the row stays. On SQLite an update shortens rows
    inside their pages, which only a rewrite of the file (VACUUM) gives back: the bytes
    dropped are counted in meta (COMPACTED_KEY) until one is worth it (see _reclaim).
    """
    rows = _rows(conn)
    short = (rows.c.id.in_(ids)) & (rows.c.reason != PRUNED)
    dropped = conn.scalar(
        select(func.coalesce(func.sum(func.length(rows.c.reason) - len(PRUNED)), 0)).where(short)
    )
    conn.execute(update(rows).where(short).values(reason=PRUNED))
    if conn.dialect.name == "sqlite" and dropped:
        conn.execute(
            sqlite_insert(Meta)
            .values(key=COMPACTED_KEY, value=str(dropped))
            .on_conflict_do_update(
                index_elements=[Meta.c.key], set_={"value": cast(Meta.c.value, Integer) + dropped}
            )
        )


def _compacted(conn: Connection) -> int:
    """Bytes of reasons dropped since the file was last rewritten."""
    value = conn.scalar(select(Meta.c.value).where(Meta.c.key == COMPACTED_KEY))
    return int(value or 0)


def _kept(db: Database) -> tuple[int, int]:
    with db.engine.connect() as conn:
        measurements = conn.scalar(select(func.count()).select_from(_rows(conn)))
        runs = conn.scalar(select(func.count()).select_from(Run))
    return int(measurements or 0), int(runs or 0)


def _size(file: Path | None) -> int | None:
    if file is None:
        return None
    return sum(p.stat().st_size for p in (file, Path(f"{file}-wal")) if p.exists())


def _reclaim(db: Database, exclusive: bool) -> str:
    """Give freed pages back to the file system; say how, or why not.

    A full VACUUM when the file cannot give pages back in steps (auto_vacuum NONE), or when
    shortened rows hold back enough of it (_compact); else, or if that cannot run now, the
    incremental one.
    """
    if db.engine.dialect.name != "sqlite" or db.file is None:
        if db.engine.dialect.name == "postgresql":
            return "by PostgreSQL (whole months of evidence dropped; autovacuum reuses the rest)"
        return "by the database itself (PostgreSQL's autovacuum reuses the space)"
    with db.engine.connect() as conn:
        mode = int(conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() or 0)
        packed = _compacted(conn) * REWRITE_SHARE >= db.file.stat().st_size
    how = "incremental vacuum"
    if mode != 2 or packed:
        how = _full_vacuum(db) if exclusive else _vacuum_if_nobody_sweeps(db, db.file)
        if mode == 2 and not how.startswith("vacuum"):  # packing waits; pages go back now
            _incremental_vacuum(db)
            how = f"incremental vacuum; packing the shortened rows (VACUUM) {how}"
    else:
        _incremental_vacuum(db)
    _checkpoint(db)
    return how


def _incremental_vacuum(db: Database) -> None:
    while True:
        with db.engine.begin() as conn:
            free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
            if free == 0:
                return
            # No result columns: executing it once runs it to the end (up to the step).
            conn.exec_driver_sql(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})")


def _vacuum_if_nobody_sweeps(db: Database, file: Path) -> str:
    if sweep_alive(file):
        return "not yet: a sweep is running (freed pages are reused; prune again later)"
    try:
        lock = SweepLock.acquire(file, "probe prune")  # no sweep may start mid-VACUUM
    except SweepBusy:
        return "not yet: a sweep started (freed pages are reused; prune again later)"
    except OSError as exc:
        return f"not done: cannot lock the database ({exc})"
    try:
        return _full_vacuum(db)
    finally:
        lock.release()


def _full_vacuum(db: Database) -> str:
    """Rewrite the file with auto_vacuum = INCREMENTAL, if the disk has room for a copy."""
    assert db.file is not None
    size = db.file.stat().st_size
    for where in (db.file.parent, Path(tempfile.gettempdir())):
        st = os.statvfs(where)
        if st.f_bavail * st.f_frsize < size * 11 // 10:
            need = f"about {size / 1e6:.0f} MB free in {where}"
            return f"not done: VACUUM needs {need} (freed pages are reused)"
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA auto_vacuum = INCREMENTAL")
        conn.exec_driver_sql("VACUUM")  # pysqlite opens no transaction for it
    with db.engine.begin() as conn:  # the rewrite packed the shortened rows
        conn.execute(delete(Meta).where(Meta.c.key == COMPACTED_KEY))
    return "vacuum (rewrote the file: it gives space back in steps at each prune)"


def _checkpoint(db: Database) -> None:
    """Copy the WAL into the file and empty it; a reader holding a snapshot may prevent it."""
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
