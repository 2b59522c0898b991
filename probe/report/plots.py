"""The report's plots as PNG bytes, drawn by matplotlib's Agg backend (no display needed).

Imported only by html.py, and so only when a page is asked for: matplotlib costs about a
second and tens of MB at import, which a text or JSON report never pays.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, no GUI toolkit

import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap
from matplotlib.patches import Rectangle

from probe.report.model import HOURS, PlotData, Report

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The heatmap's cell values, and their colours: no results, accessible, inconclusive,
# throttled, blocked (the worst verdict seen in the cell wins, but inconclusive only where
# nothing was accessible: one failed control should not grey out an hour).
CELL_COLOURS = ("#ffffff", "#4caf50", "#bdbdbd", "#ff9800", "#d32f2f")
CELL_LABELS = ("no results", "accessible", "inconclusive", "throttled", "blocked")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # matplotlib's default date epoch
MAX_SERIES = 6  # throttled services drawn in the throughput plot, most throttled first


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return out.getvalue()


def _cell(counts: tuple[int, int, int, int]) -> int:
    accessible, blocked, throttled, inconclusive = counts
    if blocked:
        return 4
    if throttled:
        return 3
    if accessible:
        return 1
    return 2 if inconclusive else 0


def timeline(data: PlotData) -> bytes:
    """The heatmap: a row per service, a column per hour (or day), coloured by verdict."""
    services = sorted({c.service for c in data.timeline})
    buckets = sorted({c.bucket for c in data.timeline})
    column = {b: i for i, b in enumerate(buckets)}
    row = {s: i for i, s in enumerate(services)}
    grid = [[0] * max(1, len(buckets)) for _ in range(max(1, len(services)))]
    for c in data.timeline:
        grid[row[c.service]][column[c.bucket]] = _cell(c.counts)
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.3 * len(services)))
    ax.imshow(grid, aspect="auto", interpolation="nearest",
              cmap=ListedColormap(CELL_COLOURS), vmin=0, vmax=len(CELL_COLOURS) - 1)  # fmt: skip
    ax.set_yticks(range(len(services)), services)
    ticks = list(range(0, len(buckets), max(1, len(buckets) // 10)))
    fmt = "%m-%d %H:00" if data.bucket_hours == 1 else "%Y-%m-%d"
    ax.set_xticks(ticks, [buckets[i].strftime(fmt) for i in ticks], rotation=30, ha="right")
    unit = "hour" if data.bucket_hours == 1 else "day"
    ax.set_title(f"Verdicts per service and {unit} (UTC): the worst verdict seen in each cell")
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in CELL_COLOURS[1:]]
    ax.legend(handles, CELL_LABELS[1:], loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def throughput(data: PlotData) -> bytes:
    """Mean goodput per bucket of the throttled services, throttled results against baseline."""
    throttled: dict[str, int] = defaultdict(int)
    for p in data.throughput:
        if p.throttled:
            throttled[p.service] += p.count
    services = sorted(throttled, key=lambda s: (-throttled[s], s))[:MAX_SERIES]
    fig, ax = plt.subplots(figsize=(12, 4))
    for service in services:
        points = sorted(
            (p for p in data.throughput if p.service == service), key=lambda p: p.bucket
        )
        slow = [p for p in points if p.throttled]
        base = [p for p in points if p.mean_baseline_kbps is not None]
        line = ax.plot(
            _days([p.bucket for p in slow]), [p.mean_kbps for p in slow], "o", markersize=3,
            label=f"{service}: throttled results",
        )[0]  # fmt: skip
        ax.plot(
            _days([p.bucket for p in base]), [p.mean_baseline_kbps or 0.0 for p in base], "--",
            color=line.get_color(), linewidth=1, label=f"{service}: baseline",
        )  # fmt: skip
    if not services:
        ax.text(0.5, 0.5, "no throttled results in this scope", ha="center", transform=ax.transAxes)
    else:
        ax.set_yscale("log")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.xaxis_date()
    ax.set_ylabel("kbit/s")
    ax.set_title("Throughput of throttled inputs against their baselines (mean per bucket, UTC)")
    fig.autofmt_xdate()
    return _png(fig)


def hour_profile(report: Report) -> bytes:
    """The hour-of-day profile: the share of each UTC hour's results blocked and throttled."""
    totals = _sum(g.hours["all"] for g in report.groups)
    fig, ax = plt.subplots(figsize=(12, 3.5))
    hours = list(range(HOURS))
    bottom = [0.0] * HOURS
    for verdict, colour in (("blocked", CELL_COLOURS[4]), ("throttled", CELL_COLOURS[3])):
        counts = _sum(g.hours[verdict] for g in report.groups)
        share = [100 * n / t if t else 0.0 for n, t in zip(counts, totals, strict=True)]
        ax.bar(hours, share, bottom=bottom, color=colour, label=verdict)
        bottom = [b + s for b, s in zip(bottom, share, strict=True)]
    ax.set_xticks(hours, [f"{h:02d}" for h in hours])
    ax.set_xlabel("hour of day (UTC)")
    ax.set_ylabel("% of that hour's results")
    ax.set_title("Hour-of-day profile: blocked and throttled results, every service and vantage")
    ax.legend(loc="upper left")
    return _png(fig)


def _days(moments: Sequence[dt.datetime]) -> list[float]:
    """Times as matplotlib's date numbers (days since 1970-01-01 UTC)."""
    return [(m - EPOCH).total_seconds() / 86400 for m in moments]


def _sum(rows: Iterable[Sequence[int]]) -> list[int]:
    """Hourly counts added up."""
    out = [0] * HOURS
    for values in rows:
        for i, n in enumerate(values):
            out[i] += n
    return out
