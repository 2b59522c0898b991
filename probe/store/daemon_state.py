"""The daemon's rows: its schedule per group, its sweeps, outages; and what ``probe status``
reads back. Synchronous (the daemon calls these through AsyncWriter's worker thread)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    delete,
    func,
    insert,
    inspect,
    select,
    update,
)

from probe.classify.verdict import Vantage
from probe.store import compact
from probe.store.database import Database
from probe.store.models import DaemonGroupState, DaemonSweep, Outage, Run
from probe.store.rows import vantage_of

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
class LastRun:
    """The newest run: when it started, and from which declared vantage."""

    run_id: str
    started_at: dt.datetime
    vantage: Vantage


@dataclass(frozen=True, slots=True)
class StatusData:
    """Everything ``probe status`` shows that the database holds."""

    groups: tuple[GroupRow, ...]
    outages: tuple[OutageRow, ...]  # open ones first, then the most recent
    verdicts_since: dict[str, int]
    since: dt.datetime
    last_run: LastRun | None
    last_network: str | None
    has_daemon_tables: bool


def _values(row: GroupRow | SweepRow) -> dict[str, object]:
    return {f: getattr(row, f) for f in row.__slots__}


def save_groups(db: Database, rows: Sequence[GroupRow]) -> None:
    """The schedule as it stands: these rows, and no others (the daemon owns the table)."""
    now = dt.datetime.now(dt.UTC)
    table = DaemonGroupState
    with db.begin("save_groups") as conn:
        conn.execute(delete(table).where(table.c.name.not_in([r.name for r in rows])))
        for r in rows:
            values = {**_values(r), "updated_at": now}
            # An upsert any backend runs: the daemon is the table's only writer, inside
            # this transaction (SQLite's write lock; one daemon per database).
            changed = conn.execute(update(table).where(table.c.name == r.name).values(values))
            if changed.rowcount == 0:
                conn.execute(insert(table).values(values))


def record_sweep(db: Database, row: SweepRow) -> None:
    """A daemon sweep's group, plan and network (its run row exists already)."""
    with db.begin("record_sweep") as conn:
        conn.execute(insert(DaemonSweep).values(_values(row)))


def _of_vantage(name: str | None) -> ColumnElement[bool]:
    column = Outage.c.vantage_name
    return column.is_(None) if name is None else column == name


def open_outage(
    db: Database, vantage: str | None, at: dt.datetime, detected_by: str, network: str | None
) -> bool:
    """Record that connectivity was lost at ``at``, unless an outage is open already."""
    with db.begin("open_outage") as conn:
        found = conn.scalar(
            select(Outage.c.id).where(_of_vantage(vantage), Outage.c.ended_at.is_(None)).limit(1)
        )
        if found is not None:
            return False
        conn.execute(insert(Outage).values(vantage_name=vantage, started_at=at, ended_at=None,
                                           detected_by=detected_by, network=network))  # fmt: skip
    return True


def close_outages(db: Database, vantage: str | None, at: dt.datetime) -> int:
    """Connectivity came back at ``at``: end every open outage of the vantage."""
    with db.begin("close_outages") as conn:
        result = conn.execute(
            update(Outage)
            .where(_of_vantage(vantage), Outage.c.ended_at.is_(None))
            .values(ended_at=at)
        )
        return int(result.rowcount)


def _outage(o: RowMapping) -> OutageRow:
    return OutageRow(**{f: o[f] for f in OutageRow.__slots__})


def _group(g: RowMapping) -> GroupRow:
    return GroupRow(**{f: g[f] for f in GroupRow.__slots__})


def sweeps(db: Database) -> list[SweepRow]:
    """Every daemon sweep, oldest first (the benchmark's schedule accuracy)."""
    with db.connect("sweeps") as conn:
        rows = conn.execute(select(DaemonSweep).order_by(DaemonSweep.c.started_at)).mappings()
        return [SweepRow(**{f: r[f] for f in SweepRow.__slots__}) for r in rows]


def status(db: Database, now: dt.datetime | None = None) -> StatusData:
    """The schedule, outages, verdicts since the daemon started (or the last 24 h)."""
    now = now or dt.datetime.now(dt.UTC)
    tables = set(inspect(db.engine).get_table_names())
    has = {"daemon_groups", "outages", "daemon_sweeps"} <= tables
    with db.connect("status") as conn:
        groups: tuple[GroupRow, ...] = ()
        outages: tuple[OutageRow, ...] = ()
        network = None
        if has:
            schedule = select(DaemonGroupState).order_by(DaemonGroupState.c.name)
            groups = tuple(_group(g) for g in conn.execute(schedule).mappings())
            open_first = select(Outage).order_by(Outage.c.ended_at.is_not(None),
                                                 Outage.c.started_at.desc())  # fmt: skip
            found = conn.execute(open_first.limit(RECENT_OUTAGES)).mappings()
            outages = tuple(_outage(o) for o in found)
            network = conn.scalar(
                select(DaemonSweep.c.network).order_by(DaemonSweep.c.started_at.desc()).limit(1)
            )
        since = min((g.daemon_started_at for g in groups), default=now - dt.timedelta(days=1))
        verdicts = _verdicts_since(conn, since)
        last = _last_run(conn)
    return StatusData(groups, outages, verdicts, since, last, network, has)


def _verdicts_since(conn: Connection, since: dt.datetime) -> dict[str, int]:
    m = compact.logical(conn).c  # measured_at indexed on SQLite too
    counts = conn.execute(
        select(m.verdict, func.count()).where(m.measured_at >= since).group_by(m.verdict)
    )
    return {str(v): int(n) for v, n in counts}


def _last_run(conn: Connection) -> LastRun | None:
    r = Run.c
    newest = select(r.run_id, r.started_at, r.vantage_name, r.network_type, r.asn, r.country)
    row = conn.execute(newest.order_by(r.started_at.desc()).limit(1)).mappings().first()
    return None if row is None else LastRun(row["run_id"], row["started_at"], vantage_of(row))


def iter_outages(db: Database, since: dt.datetime | None = None) -> Iterator[OutageRow]:
    """Every outage window, oldest first; with ``since``, those still open or ended after it.

    A database from before revision 0003d has no outages table, so it has no outages.
    """
    if "outages" not in inspect(db.engine).get_table_names():
        return
    stmt = select(Outage).order_by(Outage.c.started_at, Outage.c.id)
    if since is not None:
        stmt = stmt.where(Outage.c.ended_at.is_(None) | (Outage.c.ended_at >= since))
    with db.connect("outages") as conn:
        for o in conn.execute(stmt.execution_options(yield_per=500)).mappings():
            yield _outage(o)
