"""What rule 7 reads back from the store: the bytes a vantage spent, and its past rates.

Both are keyed by the vantage's declared name (None matches runs that declared none: the
volunteer's own database is one vantage), and both read columns of measurements that the
writer fills: ``throughput_bytes`` (every transfer of a test, controls included), and
``throughput_kbps`` with ``throughput_address`` (the target's median rate, and where it was
timed). Revision 0002 copied the first and the last out of older rows' evidence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, func, select

from probe.classify.evidence import PastRate
from probe.store import compact
from probe.store.database import Database
from probe.store.models import Run

HISTORY_DAYS = 30
HISTORY_PER_INPUT = 10


def _same_vantage(vantage_name: str | None) -> ColumnElement[bool]:
    return (
        Run.c.vantage_name.is_(None) if vantage_name is None else Run.c.vantage_name == vantage_name
    )


def bytes_since(db: Database, since: dt.datetime, vantage_name: str | None) -> int:
    """Throughput bytes recorded since ``since`` by runs that declared this vantage name."""
    with db.connect("throughput_bytes_since") as conn:
        m = compact.logical(conn).c  # measured_at indexed on SQLite too
        stmt = (
            select(func.coalesce(func.sum(m.throughput_bytes), 0))
            .join(Run, Run.c.run_id == m.run_id)
            .where(m.measured_at >= since, _same_vantage(vantage_name))
        )
        spent = conn.execute(stmt).scalar_one()
    return int(spent or 0)


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
    found: dict[str, list[PastRate]] = {}
    with db.connect("past throughput rates") as conn:
        for input_, at, kbps, verdict, detail, address in conn.execute(
            _rates_statement(conn, wanted, vantage_name, since)
        ):
            rows = found.setdefault(input_, [])
            if len(rows) < per_input and kbps is not None:
                rows.append(PastRate(at.isoformat(), float(kbps), verdict, detail, address))
    return {k: tuple(v) for k, v in found.items()}


def _rates_statement(
    conn: Connection, wanted: list[str], vantage_name: str | None, since: dt.datetime
) -> Select[tuple[Any, ...]]:
    m = compact.logical(conn).c  # measured_at indexed on SQLite too
    return (
        select(m.input, m.measured_at, m.throughput_kbps, m.verdict, m.detail,
               m.throughput_address)
        .join(Run, Run.c.run_id == m.run_id)
        .where(
            m.input.in_(wanted),
            m.throughput_kbps.is_not(None),
            m.measured_at >= since,
            _same_vantage(vantage_name),
        )
        .order_by(m.measured_at.desc(), m.id.desc())
    )  # fmt: skip
