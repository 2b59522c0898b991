"""The probe's outbox: measurements no collector has acknowledged yet (``uploaded_at`` NULL).

A measurement is marked only after the collector answered 2xx for the batch that held it;
a crash between the answer and the mark sends it again, which the collector's idempotency
turns into nothing (ingest.py). Batches go oldest first, each with the current state of
the runs its measurements belong to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from probe.collector.wire import MEASUREMENT_FIELDS, RUN_FIELDS
from probe.store.database import Database
from probe.store.models import Evidence, Measurement, Run

_MEASUREMENT_COLUMNS = [getattr(Measurement, n) for n in MEASUREMENT_FIELDS if n != "evidence"]
_RUN_COLUMNS = [getattr(Run, n) for n in RUN_FIELDS]


@dataclass(frozen=True, slots=True)
class Batch:
    """Some pending measurements as the wire sends them, and their local ids (to mark)."""

    ids: tuple[int, ...]
    runs: list[dict[str, Any]]
    measurements: list[dict[str, Any]]


def pending_count(db: Database) -> int:
    """How many measurements wait to be acknowledged."""
    stmt = select(func.count()).select_from(Measurement).where(Measurement.uploaded_at.is_(None))
    with db.session("outbox count") as session:
        return int(session.execute(stmt).scalar_one())


def next_batch(db: Database, limit: int, after: int = 0) -> Batch:
    """Up to ``limit`` pending measurements with ids above ``after``, oldest first."""
    stmt = (
        select(Measurement.id, *_MEASUREMENT_COLUMNS, Evidence.data)
        .outerjoin(Evidence, Evidence.measurement_id == Measurement.id)
        .where(Measurement.uploaded_at.is_(None), Measurement.id > after)
        .order_by(Measurement.id)
        .limit(limit)
    )
    with db.session("outbox read") as session:
        rows = session.execute(stmt).mappings().all()
        run_ids = sorted({r["run_id"] for r in rows})
        runs = session.execute(select(*_RUN_COLUMNS).where(Run.run_id.in_(run_ids))).mappings()
        run_dicts = [dict(r) for r in runs]
    measurements = []
    for r in rows:
        m = {n: r[n] for n in MEASUREMENT_FIELDS if n != "evidence"}
        m["evidence"] = r["data"]
        measurements.append(m)
    return Batch(tuple(r["id"] for r in rows), run_dicts, measurements)


def mark_uploaded(db: Database, ids: Sequence[int], at: dt.datetime | None = None) -> None:
    """Mark measurements acknowledged by a collector."""
    when = at or dt.datetime.now(dt.UTC)
    with db.session("outbox mark") as session, session.begin():
        for start in range(0, len(ids), 500):  # bounded IN lists
            chunk = list(ids[start : start + 500])
            session.execute(
                update(Measurement).where(Measurement.id.in_(chunk)).values(uploaded_at=when)
            )
