"""The report as ONE self-contained HTML page: the plots are PNGs inlined as data: URIs, the
style is inline, and nothing is fetched (no script, font or image from anywhere), so the page
opens offline and can be mailed as one file.

Each plot is a <figure> with a stable id (plot-timeline, plot-throughput, plot-hours) that
tests and readers can find; the tables repeat what the text report says.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from probe.report import plots
from probe.report.model import PlotData, Report
from probe.report.serialize import iso
from probe.report.text import render

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1300px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
ul.findings li { margin: 0.3em 0; } .finding { font-weight: bold; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.8em; }
"""
FIGURES = (
    ("plot-timeline", "Timeline: service x time, coloured by verdict"),
    ("plot-throughput", "Throughput of throttled inputs against their baselines"),
    ("plot-hours", "Hour-of-day profile (UTC)"),
)


def _figure(figure_id: str, caption: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="{figure_id}"><img alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption>'
        "</figure>"
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{c}</td>' if isinstance(c, int | float) else
            f"<td>{html.escape('' if c is None else str(c))}</td>"
            for c in row
        )
        + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary(report: Report) -> str:
    rows = [
        (
            g.service, g.vantage.name, g.vantage.asn, g.vantage.country, g.total,
            *(g.counts[v] for v in ("accessible", "blocked", "throttled", "inconclusive")),
            iso(g.blocked.first), iso(g.blocked.last),
            f"{g.dominant.detail} ({g.dominant.share:.0%})" if g.dominant else "",
            "" if g.rates is None else
            f"{g.rates.median_kbps:.0f} / {g.rates.min_kbps:.0f} of "
            f"{g.rates.median_baseline_kbps:.0f}",
        )
        for g in report.groups
    ]  # fmt: skip
    headers = ("service", "vantage", "asn", "cc", "results", "accessible", "blocked",
               "throttled", "inconclusive", "first blocked", "last blocked", "dominant detail",
               "throttled kbps median / min of baseline")  # fmt: skip
    return _table(headers, rows)


def page(report: Report, data: PlotData) -> str:
    """The whole page."""
    findings = report.findings()
    items = "".join(f'<li class="finding">{html.escape(f)}</li>' for f in findings)
    pngs = (plots.timeline(data), plots.throughput(data), plots.hour_profile(report))
    figures = "".join(
        _figure(fid, caption, png) for (fid, caption), png in zip(FIGURES, pngs, strict=True)
    )
    span = f"{iso(report.first)} to {iso(report.last)}" if report.first else "no results"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>probe report: {report.total} results</title>
<style>{STYLE}</style></head>
<body>
<h1>probe report: {report.total} results, {html.escape(span)}</h1>
<h2>Findings</h2>
<ul class="findings" id="findings">{items or "<li>nothing blocked or throttled</li>"}</ul>
<h2>Plots</h2>
{figures}
<h2>Per service and vantage</h2>
<div id="summary">{_summary(report)}</div>
<h2>The text report</h2>
<pre id="text-report">{html.escape(render(report))}</pre>
</body></html>
"""
