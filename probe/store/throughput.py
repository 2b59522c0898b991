"""What rule 7 reads back from the store: the bytes a vantage spent, and its past rates.

Both are keyed by the vantage's declared name (None matches runs that declared none: the
volunteer's own database is one vantage). Sweeps put each test's bytes in the evidence
(``throughput_bytes``), so the daily budget needs no column of its own and older databases
answer 0; past rates are the stored rows' ``throughput_kbps``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import ColumnElement, func, select

from probe.classify.evidence import PastRate
from probe.store.database import Database
from probe.store.models import Evidence, Measurement, Run

HISTORY_DAYS = 30
HISTORY_PER_INPUT = 10


def _same_vantage(vantage_name: str | None) -> ColumnElement[bool]:
    return Run.vantage_name.is_(None) if vantage_name is None else Run.vantage_name == vantage_name


def bytes_since(db: Database, since: dt.datetime, vantage_name: str | None) -> int:
    """Throughput bytes recorded since ``since`` by runs that declared this vantage name."""
    spent = Evidence.data[("verdict_evidence", "throughput_bytes")].as_integer()
    stmt = (
        select(func.coalesce(func.sum(spent), 0))
        .select_from(Evidence)
        .join(Measurement, Measurement.id == Evidence.measurement_id)
        .join(Run, Run.run_id == Measurement.run_id)
        .where(Measurement.measured_at >= since, _same_vantage(vantage_name))
    )
    with db.session("throughput_bytes_since") as session:
        return int(session.execute(stmt).scalar_one())


def past_rates(
    db: Database,
    inputs: Iterable[str],
    vantage_name: str | None,
    since: dt.datetime,
    per_input: int = HISTORY_PER_INPUT,
) -> dict[str, tuple[PastRate, ...]]:
    """Each input's timed tests at this vantage since ``since``, newest first, at most
    ``per_input`` of them (inputs never timed are left out)."""
    wanted = sorted(set(inputs))
    if not wanted:
        return {}
    stmt = (
        select(
            Measurement.input,
            Measurement.measured_at,
            Measurement.throughput_kbps,
            Measurement.verdict,
            Measurement.detail,
            Evidence.data[("verdict_evidence", "throughput", "address")].as_string(),
        )
        .join(Run, Run.run_id == Measurement.run_id)
        .outerjoin(Evidence, Evidence.measurement_id == Measurement.id)
        .where(
            Measurement.input.in_(wanted),
            Measurement.throughput_kbps.is_not(None),
            Measurement.measured_at >= since,
            _same_vantage(vantage_name),
        )
        .order_by(Measurement.measured_at.desc(), Measurement.id.desc())
    )
    found: dict[str, list[PastRate]] = {}
    with db.session("past throughput rates") as session:
        for input_, at, kbps, verdict, detail, address in session.execute(stmt):
            rows = found.setdefault(input_, [])
            if len(rows) < per_input and kbps is not None:
                rows.append(PastRate(at.isoformat(), float(kbps), verdict, detail, address))
    return {k: tuple(v) for k, v in found.items()}
