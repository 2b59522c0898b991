"""The report as JSON: one documented, stable shape (README, "Reports"; kind "report").

Times are ISO-8601 UTC with a Z; days are ``YYYY-MM-DD``; rates are kbit/s. ``daily`` rows
are arrays in the order of ``daily_columns`` (a year of days for hundreds of services and
vantages stays small that way). A change of shape bumps JSON_VERSION.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from probe.classify.verdict import VERDICTS
from probe.report.model import (
    INTERFERENCE,
    Concentration,
    Episode,
    GroupReport,
    OutageSpan,
    Report,
)

JSON_VERSION = 1
DAILY_COLUMNS = ("day", *VERDICTS)


def iso(moment: dt.datetime | None) -> str | None:
    """ISO-8601 UTC with a Z, to the second; None stays None."""
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def report_json(report: Report) -> dict[str, Any]:
    """The whole report as a JSON-ready dict."""
    f = report.filters
    return {
        "version": JSON_VERSION,
        "kind": "report",
        "generated_at": iso(report.generated_at),
        "filters": {
            "since": iso(f.since), "until": iso(f.until), "service": list(f.services),
            "vantage": f.vantage, "country": f.country, "asn": f.asn,
        },
        "first": iso(report.first),
        "last": iso(report.last),
        "measurements": report.total,
        "verdicts": list(VERDICTS),
        "daily_columns": list(DAILY_COLUMNS),
        "findings": report.findings(),
        "groups": [_group(g) for g in report.groups],
        "outages": [_outage(o, report.generated_at) for o in report.outages],
    }  # fmt: skip


def _episode(ep: Episode) -> dict[str, Any]:
    return {"count": ep.count, "first": iso(ep.first), "last": iso(ep.last)}


def _concentration(c: Concentration) -> dict[str, Any]:
    return {
        "verdict": c.verdict, "start_hour": c.start_hour, "end_hour": c.end_hour,
        "hours": c.hours, "share": round(c.share, 4),
        "measurement_share": round(c.measurement_share, 4), "text": c.describe(),
    }  # fmt: skip


def _group(g: GroupReport) -> dict[str, Any]:
    rates = g.rates
    return {
        "service": g.service,
        "vantage": {"name": g.vantage.name, "asn": g.vantage.asn, "country": g.vantage.country},
        "measurements": g.total,
        "counts": dict(g.counts),
        "blocked": _episode(g.blocked),
        "throttled": _episode(g.throttled),
        "dominant_detail": None if g.dominant is None else {
            "detail": g.dominant.detail, "count": g.dominant.count,
            "share": round(g.dominant.share, 4),
        },
        "throttle_rates": None if rates is None else {
            "count": rates.count, "median_kbps": round(rates.median_kbps, 3),
            "min_kbps": round(rates.min_kbps, 3),
            "median_baseline_kbps": round(rates.median_baseline_kbps, 3),
            "median_ratio": round(rates.median_ratio, 5),
        },
        "hours": {name: list(g.hours[name]) for name in (*INTERFERENCE, "all")},
        "concentrations": [_concentration(c) for c in g.concentrations],
        "daily": [[d.day.isoformat(), *d.counts] for d in g.days],
    }  # fmt: skip


def _outage(o: OutageSpan, now: dt.datetime) -> dict[str, Any]:
    return {
        "vantage": o.vantage, "started_at": iso(o.started_at), "ended_at": iso(o.ended_at),
        "duration_s": round(o.duration_s(now), 1),
    }  # fmt: skip
