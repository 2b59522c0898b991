"""The report's queries: every aggregation runs in the database (GROUP BY there), so a
report over a million measurements reads a few thousand rows, never the measurements.

Portable SQLAlchemy Core on SQLite and PostgreSQL alike; the one dialect-specific piece is
how a stored time becomes its UTC day and hour (day_of, hour_of, hour_bucket_of): SQLite keeps naive
UTC text ("2026-03-01 18:05:00.000000", models.UTCDateTime), PostgreSQL a timestamptz
whose fields depend on the session's time zone unless converted to UTC first.
Read only: the queries select columns every schema revision has (queries.py's rule), and the
outages table only where it exists (revision 0003d).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, Unpack

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Float,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    cast,
    func,
    inspect,
    or_,
    select,
)

from probe.classify.verdict import VERDICTS
from probe.report.hours import find_concentration
from probe.report.model import (
    HOURS,
    INTERFERENCE,
    DayCounts,
    DetailShare,
    Episode,
    Filters,
    GroupReport,
    OutageSpan,
    Report,
    ThrottleRates,
    VantageKey,
)
from probe.store import compact
from probe.store.database import Database
from probe.store.models import Measurement, Outage, Run

Key = tuple[str, VantageKey]
_S = TypeVar("_S", bound="AnySelect")
AnySelect = Select[Unpack[tuple[Any, ...]]]  # noqa: UP044 (a runtime alias)
_KEY_COLUMNS = (Measurement.c.service, Run.c.vantage_name, Run.c.asn, Run.c.country)


def _key(row: Any) -> Key:
    return row[0], VantageKey(row[1], row[2], row[3])


def day_of(column: Any, dialect: str) -> ColumnElement[str]:
    """The stored time's UTC day as ``YYYY-MM-DD`` text."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(column, 1, 10)


def hour_of(column: Any, dialect: str) -> ColumnElement[int]:
    """The stored time's UTC hour, 0-23."""
    if dialect == "postgresql":
        return cast(func.extract("hour", func.timezone("UTC", column)), Integer)
    return cast(func.substr(column, 12, 2), Integer)


def hour_bucket_of(column: Any, dialect: str) -> ColumnElement[str]:
    """The stored time's UTC day and hour as ``YYYY-MM-DD HH`` text."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24")
    return func.substr(column, 1, 13)


def interference_rows() -> ColumnElement[bool]:
    """Blocked or throttled, spelled so the database reads the partial index of those rows
    (models.INTERFERENCE_ROWS) alone: SQLite uses a partial index only where the query's
    WHERE implies the index's, which a bound parameter never does, so the values are literal."""
    values: BindParameter[str] = bindparam(
        "interference", INTERFERENCE, expanding=True, literal_execute=True
    )
    return Measurement.c.verdict.in_(values)


def count_of(verdict: str) -> ColumnElement[int]:
    return func.sum(case((Measurement.c.verdict == verdict, 1), else_=0))


def scoped(query: _S, filters: Filters, rows: Rows) -> _S:
    """The query over measurements joined with their runs, limited to the report's scope."""
    query = query.select_from(Measurement).join(Run, Run.c.run_id == Measurement.c.run_id)
    conditions = rows.measured_between(filters.since, filters.until)
    if filters.services:
        conditions.append(Measurement.c.service.in_(filters.services))
    if filters.vantage is not None:
        conditions.append(Run.c.vantage_name == filters.vantage)
    if filters.country is not None:
        conditions.append(Run.c.country == filters.country)
    if filters.asn is not None:
        conditions.append(Run.c.asn == filters.asn)
    return query.where(*conditions) if conditions else query


@dataclass(frozen=True, slots=True)
class Rows:
    """How this database holds measurements: its dialect, and whether in the compact shape
    (SQLite's results behind the view: a time range is read through their index)."""

    dialect: str
    compact: bool

    @classmethod
    def of(cls, conn: Connection) -> Rows:
        """The database's, read on this connection."""
        return cls(conn.dialect.name, compact.is_compact(conn))

    def measured_between(
        self, since: dt.datetime | None, until: dt.datetime | None
    ) -> list[ColumnElement[bool]]:
        """since <= measured_at < until on Measurement, by the index of measured_at."""
        return compact.measured_between(self.compact, since, until)


def build_report(db: Database, filters: Filters, now: dt.datetime | None = None) -> Report:
    """The report over the measurements in ``filters``' scope."""
    with db.connect("report") as conn:
        rows = Rows.of(conn)
        days = _days(conn.execute(_days_query(filters, rows)))
        hours = _hours(conn.execute(_hours_query(filters, rows)))
        episodes, details = _episodes(conn.execute(_episodes_query(filters, rows)))
        rates = _rates(conn.execute(_rates_query(filters, rows)))
        span = conn.execute(
            scoped(select(func.min(Measurement.c.measured_at), func.max(Measurement.c.measured_at)),
                    filters, rows)
        ).one()  # fmt: skip
        outages = _outages(conn, filters, rows)
    groups = tuple(
        _group(key, days[key], hours, episodes, details, rates) for key in sorted(days, key=_order)
    )
    return Report(filters, now or dt.datetime.now(dt.UTC), span[0], span[1], groups, outages)


def _order(key: Key) -> tuple[str, str, int, str]:
    service, v = key
    return service, v.name or "", v.asn or 0, v.country or ""


def _days_query(filters: Filters, rows: Rows) -> AnySelect:
    day = day_of(Measurement.c.measured_at, rows.dialect).label("day")
    counts = [count_of(v) for v in VERDICTS]
    query = select(*_KEY_COLUMNS, day, *counts).group_by(*_KEY_COLUMNS, day)
    return scoped(query, filters, rows)


def _days(rows: Iterable[Any]) -> dict[Key, list[DayCounts]]:
    out: dict[Key, list[DayCounts]] = defaultdict(list)
    for row in rows:
        counts = (int(row[5]), int(row[6]), int(row[7]), int(row[8]))
        out[_key(row)].append(DayCounts(dt.date.fromisoformat(row[4]), counts))
    return out


def _hours_query(filters: Filters, rows: Rows) -> AnySelect:
    hour = hour_of(Measurement.c.measured_at, rows.dialect).label("hour")
    counts = [count_of(v) for v in INTERFERENCE]
    query = select(*_KEY_COLUMNS, hour, *counts, func.count()).group_by(*_KEY_COLUMNS, hour)
    return scoped(query, filters, rows)


def _hours(rows: Iterable[Any]) -> dict[Key, dict[str, list[int]]]:
    out: dict[Key, dict[str, list[int]]] = {}
    for row in rows:
        profile = out.setdefault(_key(row), {name: [0] * HOURS for name in (*INTERFERENCE, "all")})
        hour = int(row[4])
        for i, name in enumerate((*INTERFERENCE, "all")):
            profile[name][hour] = int(row[5 + i])
    return out


def _episodes_query(filters: Filters, rows: Rows) -> AnySelect:
    m = Measurement.c
    query = select(
        *_KEY_COLUMNS, m.verdict, m.detail, func.count(), func.min(m.measured_at),
        func.max(m.measured_at),
    ).where(interference_rows()).group_by(*_KEY_COLUMNS, m.verdict, m.detail)  # fmt: skip
    return scoped(query, filters, rows)


def _episodes(
    rows: Iterable[Any],
) -> tuple[dict[tuple[Key, str], Episode], dict[Key, dict[str, int]]]:
    """Per key and verdict: count, first, last; per key: detail -> count."""
    episodes: dict[tuple[Key, str], Episode] = {}
    details: dict[Key, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        key, verdict, detail, count = _key(row), row[4], row[5], int(row[6])
        first, last = row[7], row[8]
        known = episodes.get((key, verdict), Episode())
        episodes[key, verdict] = Episode(
            known.count + count,
            min(first, known.first) if known.first else first,
            max(last, known.last) if known.last else last,
        )
        details[key][detail] += count
    return episodes, details


def _rates_query(filters: Filters, rows: Rows) -> AnySelect:
    """Per key: count, min, and the medians of the throttled rates (window functions: the
    row numbers of the middle one or two values, which SQLite and PostgreSQL both have)."""
    m = Measurement.c
    ratio = (m.throughput_kbps / m.baseline_kbps).label("ratio")
    keys = _KEY_COLUMNS

    def rank(column: Any) -> Any:
        return func.row_number().over(partition_by=keys, order_by=column)

    inner = scoped(
        select(
            *keys, m.throughput_kbps.label("kbps"), m.baseline_kbps.label("base"), ratio,
            rank(m.throughput_kbps).label("r_kbps"), rank(m.baseline_kbps).label("r_base"),
            rank(ratio).label("r_ratio"), func.count().over(partition_by=keys).label("n"),
        ).where(
            interference_rows(), m.verdict == "throttled",
            m.throughput_kbps.is_not(None), m.baseline_kbps > 0,
        ),
        filters, rows,
    ).subquery()  # fmt: skip
    c = inner.c
    low, high = (c.n + 1) // 2, (c.n + 2) // 2

    def median(value: Any, rank_column: Any) -> Any:
        middle = or_(rank_column == low, rank_column == high)
        return func.avg(case((middle, cast(value, Float)), else_=None))

    return select(
        c.service, c.vantage_name, c.asn, c.country, func.count(), func.min(c.kbps),
        median(c.kbps, c.r_kbps), median(c.base, c.r_base), median(c.ratio, c.r_ratio),
    ).group_by(c.service, c.vantage_name, c.asn, c.country)  # fmt: skip


def _rates(rows: Iterable[Any]) -> dict[Key, ThrottleRates]:
    return {
        _key(r): ThrottleRates(int(r[4]), float(r[6]), float(r[5]), float(r[7]), float(r[8]))
        for r in rows
    }


def _outages(conn: Connection, filters: Filters, rows: Rows) -> tuple[OutageSpan, ...]:
    """The outages of the vantages in scope that overlap the report's window."""
    if not inspect(conn).has_table(Outage.name):
        return ()  # a database from before revision 0003d
    o = Outage.c
    vantages = scoped(select(Run.c.vantage_name).distinct(), _runs_only(filters), rows)
    conditions: list[ColumnElement[bool]] = [o.vantage_name.in_(vantages.scalar_subquery())]
    if filters.since is not None:
        conditions.append(or_(o.ended_at.is_(None), o.ended_at >= filters.since))
    if filters.until is not None:
        conditions.append(o.started_at < filters.until)
    query = select(o.vantage_name, o.started_at, o.ended_at).where(and_(*conditions))
    found = conn.execute(query.order_by(o.vantage_name, o.started_at))
    return tuple(OutageSpan(r[0], r[1], r[2]) for r in found)


def _runs_only(filters: Filters) -> Filters:
    """The filters that pick vantages (not the times or services of their results)."""
    return Filters(vantage=filters.vantage, country=filters.country, asn=filters.asn)


def _group(
    key: Key,
    days: Sequence[DayCounts],
    hours: dict[Key, dict[str, list[int]]],
    episodes: dict[tuple[Key, str], Episode],
    details: dict[Key, dict[str, int]],
    rates: dict[Key, ThrottleRates],
) -> GroupReport:
    counts = {v: sum(d.counts[i] for d in days) for i, v in enumerate(VERDICTS)}
    profile = hours.get(key, {name: [0] * HOURS for name in (*INTERFERENCE, "all")})
    concentrations = tuple(
        c
        for verdict in INTERFERENCE
        if (c := find_concentration(verdict, profile[verdict], profile["all"])) is not None
    )
    return GroupReport(
        service=key[0],
        vantage=key[1],
        counts=counts,
        days=tuple(sorted(days, key=lambda d: d.day)),
        blocked=episodes.get((key, "blocked"), Episode()),
        throttled=episodes.get((key, "throttled"), Episode()),
        dominant=_dominant(details.get(key, {})),
        rates=rates.get(key),
        hours={name: tuple(values) for name, values in profile.items()},
        concentrations=concentrations,
    )


def _dominant(details: dict[str, int]) -> DetailShare | None:
    if not details:
        return None
    detail, count = max(sorted(details.items()), key=lambda item: item[1])
    return DetailShare(detail, count, count / sum(details.values()))
