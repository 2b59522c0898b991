"""The probe's outbox: the measurements a collector has not acknowledged yet.

No column per row: a high-water mark per collector in ``meta``. Batches go in id order,
and after the collector answered 2xx for a batch the mark becomes its highest id; pending
is every measurement above the mark. A crash between the answer and the mark sends the
batch again, which the collector's idempotency turns into nothing (ingest.py); a mark
never goes down. Each batch carries the current state of the runs its measurements
belong to.

The mark is kept per collector URL (key ``uploaded_through:`` and 16 hex digits of the
URL's SHA-256; value ``{"id": N, "url": URL}``): an operator who switches collectors sends
the new one everything from the start, and one who switches back resumes where that one
left off. A URL spelled differently (another host name, ``http`` for ``https``) counts as
another collector: it is sent everything again, which the same collector stores as
duplicates, nothing twice. Deleting the row resends everything to that collector.

Why a mark is enough: the probe never deletes a measurement row (``probe prune`` deletes
evidence), and ids are never out of order for a reader. SQLite has one writer at a time and
gives a row the highest id plus one, so rows become visible in id order. PostgreSQL hands
out ids from a sequence before commit, so a transaction still open may hold an id below
one already visible: the read of a batch first takes ``LOCK TABLE measurements IN SHARE
MODE``, which waits for the inserts in flight (each ``record`` is one short transaction)
and holds new ones back for the length of one SELECT.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, text, update

from probe.collector.wire import MEASUREMENT_FIELDS, RUN_FIELDS
from probe.store import compact
from probe.store.database import Database
from probe.store.errors import StoreError
from probe.store.models import Evidence, Measurement, Meta, Run

MARK_PREFIX = "uploaded_through:"
_MEASUREMENT_COLUMNS = [Measurement.c[n] for n in MEASUREMENT_FIELDS if n != "evidence"]
_RUN_COLUMNS = [Run.c[n] for n in RUN_FIELDS]


@dataclass(frozen=True, slots=True)
class Batch:
    """Some pending measurements as the wire sends them, and their local ids."""

    ids: tuple[int, ...]
    runs: list[dict[str, Any]]
    measurements: list[dict[str, Any]]


def collector_url(url: str) -> str:
    """A collector's URL as its mark knows it (without trailing slashes)."""
    return url.rstrip("/")


def mark_key(url: str) -> str:
    """The ``meta`` key of a collector's mark (keys are at most 64 characters, URLs not)."""
    return MARK_PREFIX + hashlib.sha256(collector_url(url).encode()).hexdigest()[:16]


def _read_mark(conn: Connection, url: str, *, for_update: bool = False) -> int:
    stmt = select(Meta.c.value).where(Meta.c.key == mark_key(url))
    value = conn.execute(stmt.with_for_update() if for_update else stmt).scalar()
    if value is None:
        return 0
    try:
        through = json.loads(value)["id"]
        if isinstance(through, bool) or not isinstance(through, int):
            raise TypeError
    except (ValueError, TypeError, KeyError):
        raise StoreError(
            f'meta {mark_key(url)!r} is {value!r}; expected {{"id": N, "url": ...}} '
            "(delete the row to send that collector everything again)"
        ) from None
    return through


def mark(db: Database, url: str) -> int:
    """The highest id the collector at ``url`` acknowledged (0: none yet)."""
    with db.connect("outbox mark read") as conn:
        return _read_mark(conn, url)


def pending_count(db: Database, url: str) -> int:
    """How many measurements wait to be acknowledged by the collector at ``url``."""
    with db.connect("outbox count") as conn:
        through = _read_mark(conn, url)
        # The rows themselves: through the view every row would be joined only to be counted.
        rows = compact.results() if compact.is_compact(conn) else Measurement
        stmt = select(func.count()).select_from(rows).where(rows.c.id > through)
        return int(conn.execute(stmt).scalar_one())


def next_batch(db: Database, limit: int, after: int = 0) -> Batch:
    """Up to ``limit`` measurements with ids above ``after``, in id order."""
    stmt = (
        select(*_MEASUREMENT_COLUMNS, Evidence.c.data)
        .outerjoin(Evidence, Evidence.c.measurement_id == Measurement.c.id)
        .where(Measurement.c.id > after)
        .order_by(Measurement.c.id)
        .limit(limit)
    )
    with db.connect("outbox read") as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("LOCK TABLE measurements IN SHARE MODE"))  # see above
        rows = conn.execute(stmt).mappings().all()
        run_ids = sorted({r["run_id"] for r in rows})
        runs = conn.execute(select(*_RUN_COLUMNS).where(Run.c.run_id.in_(run_ids))).mappings()
        run_dicts = [dict(r) for r in runs]
    measurements = []
    for r in rows:
        m = {n: r[n] for n in MEASUREMENT_FIELDS if n != "evidence"}
        m["evidence"] = r["data"]
        measurements.append(m)
    return Batch(tuple(r["id"] for r in rows), run_dicts, measurements)


def _insert(conn: Connection) -> Any:
    """The dialect's INSERT (with ON CONFLICT) into meta; PostgreSQL's dialect is imported
    only where it runs, not into every probe that uploads from SQLite."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(Meta)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(Meta)


def advance(db: Database, url: str, through: int) -> None:
    """Record that the collector at ``url`` acknowledged every id up to ``through``; a
    lower ``through`` than the mark (a slower concurrent upload) leaves it as it is."""
    key = mark_key(url)
    with db.begin("outbox mark") as conn:
        # A write first: on SQLite it takes the write lock, so no other upload's mark can
        # come between the read and the update below (FOR UPDATE does that on PostgreSQL).
        conn.execute(
            _insert(conn)
            .values(key=key, value=json.dumps({"id": 0, "url": collector_url(url)}))
            .on_conflict_do_nothing(index_elements=["key"])
        )
        if through > _read_mark(conn, url, for_update=True):
            value = json.dumps({"id": through, "url": collector_url(url)})
            conn.execute(update(Meta).where(Meta.c.key == key).values(value=value))
