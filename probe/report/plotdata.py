"""What the HTML page's plots need beyond the report, aggregated in the database too: the
timeline heatmap's cells (service x hour, or x day over long spans) and the throughput of
the services that were throttled, per bucket."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, func, select

from probe.classify.verdict import VERDICTS
from probe.report.model import PlotData, Report, ThroughputPoint, TimelineCell
from probe.report.query import AnySelect, Rows, count_of, day_of, hour_bucket_of, scoped
from probe.store.database import Database
from probe.store.models import Measurement

# Up to two months, a cell per hour (1,464 columns: a screen's width); longer, a cell per day.
HOURLY_SPAN = dt.timedelta(days=62)


def bucket_hours(report: Report) -> int:
    """1 (hourly cells) for a short span, 24 (daily) for a long one."""
    if report.first is None or report.last is None:
        return 1
    return 1 if report.last - report.first <= HOURLY_SPAN else 24


def _bucket(dialect: str, hours: int) -> ColumnElement[str]:
    if hours == 1:
        return hour_bucket_of(Measurement.c.measured_at, dialect)
    return day_of(Measurement.c.measured_at, dialect)


def _parse_bucket(text: str) -> dt.datetime:
    """``YYYY-MM-DD`` or ``YYYY-MM-DD HH`` (UTC)."""
    if len(text) > 10:
        return dt.datetime.fromisoformat(f"{text[:10]}T{text[11:13]}:00").replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def plot_data(db: Database, report: Report) -> PlotData:
    """The heatmap's cells and the throughput series over the report's scope."""
    with db.connect("report plots") as conn:
        cells, series = _queries(report, Rows.of(conn))
        timeline = tuple(
            TimelineCell(r[0], _parse_bucket(r[1]), (int(r[2]), int(r[3]), int(r[4]), int(r[5])))
            for r in conn.execute(cells)
        )
        throughput = tuple(_point(r) for r in conn.execute(series))
    return PlotData(bucket_hours(report), timeline, throughput)


def _queries(report: Report, rows: Rows) -> tuple[AnySelect, AnySelect]:
    """The heatmap's cells and the throughput series."""
    filters, hours = report.filters, bucket_hours(report)
    bucket = _bucket(rows.dialect, hours).label("bucket")
    m = Measurement.c
    cells = scoped(
        select(m.service, bucket, *(count_of(v) for v in VERDICTS)).group_by(m.service, bucket),
        filters, rows,
    )  # fmt: skip
    throttled_services = scoped(
        select(m.service).where(m.verdict == "throttled").distinct(), filters, rows
    ).scalar_subquery()
    is_throttled = (m.verdict == "throttled").label("throttled")
    series = scoped(
        select(
            m.service, bucket, is_throttled, func.avg(m.throughput_kbps),
            func.avg(m.baseline_kbps), func.count(),
        ).where(m.throughput_kbps.is_not(None), m.service.in_(throttled_services))
        .group_by(m.service, bucket, is_throttled),
        filters, rows,
    )  # fmt: skip
    return cells, series


def _point(r: Any) -> ThroughputPoint:
    base = None if r[4] is None else float(r[4])
    return ThroughputPoint(r[0], _parse_bucket(r[1]), bool(r[2]), float(r[3]), base, int(r[5]))


__all__ = ["bucket_hours", "plot_data"]
