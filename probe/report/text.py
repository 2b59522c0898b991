"""The report on a terminal: aligned fixed-width tables and one-character-per-hour and
per-day strips, readable at a glance (no dependency: plain str formatting)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from itertools import groupby

from probe.report.model import HOURS, INTERFERENCE, GroupReport, Report

SHADES = " .:-=+*#%@"  # a rate of 0 to 1, darker is more
DAY_MARKS = {"blocked": "B", "throttled": "T", "inconclusive": "?", "accessible": "."}
OUTAGES_SHOWN = 20
_NUMBER = re.compile(r"|[-+]?[\d.,]+%?")  # right-aligned (an empty cell does not count against)


def _time(moment: dt.datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Aligned columns: numbers to the right, text to the left, a rule under the header."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        bool(rows) and all(_NUMBER.fullmatch(r[i]) for r in cells[1:]) for i in range(len(headers))
    ]

    def line(row: Sequence[str]) -> str:
        parts = (
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        )
        return "  ".join(parts).rstrip()

    return [line(cells[0]), "  ".join("-" * w for w in widths), *(line(r) for r in cells[1:])]


def render(report: Report) -> str:
    """The whole report as text, ending with a newline."""
    lines = _header(report)
    if not report.groups:
        lines.append("No measurements in this scope.")
        return "\n".join(lines) + "\n"
    interfered = [g for g in report.groups if g.interfered]
    sections = (
        _findings(report),
        ["Verdicts per service and vantage", *_verdicts(report.groups)],
        ["Blocking and throttling", *_episodes(interfered)] if interfered else [],
        _hours(interfered),
        _days(interfered),
        _outages(report),
    )
    for section in sections:
        if section:
            lines += ["", *section]
    return "\n".join(lines) + "\n"


def _header(report: Report) -> list[str]:
    f = report.filters
    scope = [
        f"since {_time(f.since)}" if f.since else "", f"until {_time(f.until)}" if f.until else "",
        f"service {', '.join(f.services)}" if f.services else "",
        f"vantage {f.vantage}" if f.vantage else "", f"country {f.country}" if f.country else "",
        f"AS{f.asn}" if f.asn is not None else "",
    ]  # fmt: skip
    span = f", {_time(report.first)} to {_time(report.last)} UTC" if report.first else ""
    return [
        f"probe report: {report.total} results{span}",
        "scope: " + (", ".join(s for s in scope if s) or "everything stored"),
    ]


def _findings(report: Report) -> list[str]:
    found = report.findings()
    return ["Findings", *(f"  {line}" for line in found)] if found else []


def _verdicts(groups: Sequence[GroupReport]) -> list[str]:
    rows = [
        (
            g.service, g.vantage.name or "", g.vantage.asn or "", g.vantage.country or "",
            g.total, g.counts["accessible"], g.counts["blocked"], g.counts["throttled"],
            g.counts["inconclusive"],
            f"{g.dominant.detail} ({g.dominant.share:.0%})" if g.dominant else "",
        )
        for g in groups
    ]  # fmt: skip
    headers = ("service", "vantage", "asn", "cc", "results", "accessible", "blocked",
               "throttled", "inconclusive", "dominant detail")  # fmt: skip
    return table(headers, rows)


def _episodes(groups: Sequence[GroupReport]) -> list[str]:
    rows = []
    for g in groups:
        r = g.rates
        rates = ("", "", "", "") if r is None else (
            f"{r.median_kbps:.0f}", f"{r.min_kbps:.0f}", f"{r.median_baseline_kbps:.0f}",
            f"{r.median_ratio:.1%}",
        )  # fmt: skip
        rows.append((
            g.service, g.vantage.label(), _time(g.blocked.first), _time(g.blocked.last),
            _time(g.throttled.first), _time(g.throttled.last), *rates,
        ))  # fmt: skip
    headers = ("service", "vantage", "first blocked", "last blocked", "first throttled",
               "last throttled", "kbps median", "kbps min", "baseline", "of baseline")  # fmt: skip
    return table(headers, rows)


def strip(counts: Sequence[int], totals: Sequence[int]) -> str:
    """One character per hour: the share of that hour's results, as a shade."""
    out = []
    for n, total in zip(counts, totals, strict=True):
        rate = n / total if total else 0.0
        out.append(SHADES[min(len(SHADES) - 1, round(rate * (len(SHADES) - 1)))] if n else " ")
    return "".join(out)


def _hours(groups: Sequence[GroupReport]) -> list[str]:
    if not groups:
        return []
    label_width = max(len(f"{g.service} at {g.vantage.label()}") for g in groups)
    ruler = "".join(f"{h:<6d}" for h in range(0, HOURS, 6))
    lines = [
        "Hours of day (UTC): the share of each hour's results that were blocked or throttled "
        f"(shades '{SHADES}', 0 to 100%)",
        f"{'':{label_width}}  {'':9}  |{ruler}|",
    ]
    for g in groups:
        label = f"{g.service} at {g.vantage.label()}"
        for verdict in INTERFERENCE:
            if sum(g.hours[verdict]):
                shades = strip(g.hours[verdict], g.hours["all"])
                lines.append(f"{label:{label_width}}  {verdict:9}  |{shades}|")
                label = ""
    return lines


def _day_mark(counts: tuple[int, int, int, int]) -> str:
    accessible, blocked, throttled, inconclusive = counts
    if blocked:
        return "B"
    if throttled:
        return "T"
    return "?" if inconclusive > accessible else "."


def _days(groups: Sequence[GroupReport]) -> list[str]:
    if not groups:
        return []
    lines = [
        "Days (UTC), one character a day: B blocked, T throttled (some results that day), "
        "? mostly inconclusive, . accessible, blank: no results"
    ]
    for g in groups:
        lines.append(f"  {g.service} at {g.vantage.label()}")
        marks = {d.day: _day_mark(d.counts) for d in g.days}
        for month, days in groupby(sorted(marks), key=lambda d: (d.year, d.month)):
            first = dt.date(month[0], month[1], 1)
            present = set(days)
            line = "".join(
                marks[d] if d in present else " "
                for d in (first + dt.timedelta(n) for n in range(31))
                if d.month == first.month
            )
            lines.append(f"    {first:%Y-%m} |{line}|")
    return lines


def _outages(report: Report) -> list[str]:
    if not report.outages:
        return []
    now = report.generated_at
    rows = [
        (o.vantage or "", _time(o.started_at), _time(o.ended_at) or "(still out)",
         f"{o.duration_s(now) / 60:.0f} min")
        for o in report.outages[:OUTAGES_SHOWN]
    ]  # fmt: skip
    more = len(report.outages) - OUTAGES_SHOWN
    tail = [f"... and {more} more (--format json lists them all)"] if more > 0 else []
    title = f"Outages (the vantage reached no reference host): {len(report.outages)}"
    return [title, *table(("vantage", "started", "ended", "lasted"), rows), *tail]
