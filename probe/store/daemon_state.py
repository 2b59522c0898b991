"""The daemon's rows: its schedule per group, its sweeps, outages; and what ``probe status``
reads back. Synchronous (the daemon calls these through AsyncWriter's worker thread)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, func, inspect, select, update

from probe.classify.verdict import Vantage
from probe.store import compact
from probe.store.database import Database
from probe.store.models import DaemonGroupState, DaemonSweep, Outage, Run

RECENT_OUTAGES = 10


@dataclass(frozen=True, slots=True)
class GroupRow:
    """One group of the schedule as stored (times are UTC)."""

    name: str
    pid: int
    daemon_started_at: dt.datetime
    every_s: float
    last_started_at: dt.datetime | None
    last_finished_at: dt.datetime | None
    last_run_id: str | None
    last_status: str | None
    next_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class SweepRow:
    """A run the daemon started, with its plan and network."""

    run_id: str
    group: str
    planned_at: dt.datetime
    started_at: dt.datetime
    network: str | None
    throughput: bool


@dataclass(frozen=True, slots=True)
class OutageRow:
    """A window without connectivity (ended_at None: still open)."""

    id: int
    vantage_name: str | None
    started_at: dt.datetime
    ended_at: dt.datetime | None
    detected_by: str
    network: str | None


@dataclass(frozen=True, slots=True)
class StatusData:
    """Everything ``probe status`` shows that the database holds."""

    groups: tuple[GroupRow, ...]
    outages: tuple[OutageRow, ...]  # open ones first, then the most recent
    verdicts_since: dict[str, int]
    since: dt.datetime
    last_run: Run | None
    last_network: str | None
    has_daemon_tables: bool


def save_groups(db: Database, rows: Sequence[GroupRow]) -> None:
    """The schedule as it stands: these rows, and no others (the daemon owns the table)."""
    now = dt.datetime.now(dt.UTC)
    with db.session("save_groups") as session, session.begin():
        session.execute(
            delete(DaemonGroupState).where(DaemonGroupState.name.not_in([r.name for r in rows]))
        )
        for r in rows:
            session.merge(DaemonGroupState(**{f: getattr(r, f) for f in r.__slots__},
                                           updated_at=now))  # fmt: skip


def record_sweep(db: Database, row: SweepRow) -> None:
    """A daemon sweep's group, plan and network (its run row exists already)."""
    with db.session("record_sweep") as session, session.begin():
        session.add(DaemonSweep(**{f: getattr(row, f) for f in row.__slots__}))


def _of_vantage(name: str | None) -> ColumnElement[bool]:
    column = Outage.vantage_name
    return column.is_(None) if name is None else column == name


def open_outage(
    db: Database, vantage: str | None, at: dt.datetime, detected_by: str, network: str | None
) -> bool:
    """Record that connectivity was lost at ``at``, unless an outage is open already."""
    with db.session("open_outage") as session, session.begin():
        found = session.scalar(
            select(Outage.id).where(_of_vantage(vantage), Outage.ended_at.is_(None)).limit(1)
        )
        if found is not None:
            return False
        session.add(Outage(vantage_name=vantage, started_at=at, ended_at=None,
                           detected_by=detected_by, network=network))  # fmt: skip
    return True


def close_outages(db: Database, vantage: str | None, at: dt.datetime) -> int:
    """Connectivity came back at ``at``: end every open outage of the vantage."""
    with db.session("close_outages") as session, session.begin():
        result = session.execute(
            update(Outage)
            .where(_of_vantage(vantage), Outage.ended_at.is_(None))
            .values(ended_at=at)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def _outage(o: Outage) -> OutageRow:
    return OutageRow(o.id, o.vantage_name, o.started_at, o.ended_at, o.detected_by, o.network)


def _group(g: DaemonGroupState) -> GroupRow:
    return GroupRow(g.name, g.pid, g.daemon_started_at, g.every_s, g.last_started_at,
                    g.last_finished_at, g.last_run_id, g.last_status, g.next_at)  # fmt: skip


def sweeps(db: Database) -> list[SweepRow]:
    """Every daemon sweep, oldest first (the benchmark's schedule accuracy)."""
    with db.session("sweeps") as session:
        rows = session.scalars(select(DaemonSweep).order_by(DaemonSweep.started_at))
        return [SweepRow(r.run_id, r.group, r.planned_at, r.started_at, r.network, r.throughput)
                for r in rows]  # fmt: skip


def status(db: Database, now: dt.datetime | None = None) -> StatusData:
    """The schedule, outages, verdicts since the daemon started (or the last 24 h)."""
    now = now or dt.datetime.now(dt.UTC)
    tables = set(inspect(db.engine).get_table_names())
    has = {"daemon_groups", "outages", "daemon_sweeps"} <= tables
    with db.session("status") as session:
        groups = tuple(_group(g) for g in session.scalars(
            select(DaemonGroupState).order_by(DaemonGroupState.name))) if has else ()  # fmt: skip
        since = min((g.daemon_started_at for g in groups), default=now - dt.timedelta(days=1))
        outages: tuple[OutageRow, ...] = ()
        network = None
        if has:
            open_first = select(Outage).order_by(Outage.ended_at.is_not(None),
                                                 Outage.started_at.desc())  # fmt: skip
            outages = tuple(_outage(o) for o in session.scalars(open_first.limit(RECENT_OUTAGES)))
            network = session.scalar(
                select(DaemonSweep.network).order_by(DaemonSweep.started_at.desc()).limit(1)
            )
        m = compact.logical(session.connection()).c  # measured_at indexed on SQLite too
        counts = session.execute(
            select(m.verdict, func.count()).where(m.measured_at >= since).group_by(m.verdict)
        )
        verdicts = {str(v): int(n) for v, n in counts}
        last = session.scalar(select(Run).order_by(Run.started_at.desc()).limit(1))
        if last is not None:
            session.expunge(last)
    return StatusData(groups, outages, verdicts, since, last, network, has)


def iter_outages(db: Database, since: dt.datetime | None = None) -> Iterator[OutageRow]:
    """Every outage window, oldest first; with ``since``, those still open or ended after it.

    A database from before revision 0003d has no outages table, so it has no outages.
    """
    if "outages" not in inspect(db.engine).get_table_names():
        return
    stmt = select(Outage).order_by(Outage.started_at, Outage.id)
    if since is not None:
        stmt = stmt.where(Outage.ended_at.is_(None) | (Outage.ended_at >= since))
    with db.session("outages") as session:
        for o in session.scalars(stmt.execution_options(yield_per=500)):
            yield _outage(o)


def vantage_of_run(run: Run) -> Vantage:
    """A run's declared vantage."""
    return Vantage(run.vantage_name, run.network_type, run.asn, run.country)
