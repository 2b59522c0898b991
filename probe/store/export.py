"""Export stored measurements for researchers' own tools: JSON Lines or CSV.

One row per input per run, in this fixed column order (the interface other programs rely on):

    measurement_id   integer, the row's id in the database it came from
    run_id           the sweep (uuid4 hex)
    service          e.g. "telegram"
    category         "social" | "messaging"
    input            the URL, or host:port of a bare endpoint
    verdict          "accessible" | "blocked" | "throttled" | "inconclusive"
    layer            "dns" | "tcp" | "tls" | "http" | null
    detail           dotted label, e.g. "dns.nxdomain", "tls.mitm", "ok"
    rule             id of the classifier rule that decided
    measured_at      ISO-8601 UTC, milliseconds, "Z": 2026-11-29T01:02:03.456Z
    duration_ms      float
    throughput_kbps  float | null (throughput tests only)
    baseline_kbps    float | null (the innocuous-SNI / reference goodput it was compared with)
    vantage_name     as the volunteer declared it, or null
    network_type     "home" | "mobile" | ..., or null
    asn              integer or null
    country          ISO 3166 alpha-2 or null

JSONL: one object per line, keys in that order, null for missing values.
CSV: a header row, then one row per measurement; an empty cell is null; lines end in "\\n".
A text cell that starts with "=", "+", "-", "@", a tab or a carriage return gets a leading "'",
as spreadsheets expect, so opening an export never runs a formula that a target list (or a
network's answer) put there; numbers are written as they are.
The volunteer's IP address is not a column: the database never holds it. Evidence and
observations are not exported here (they are per-measurement detail: `probe show`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable
from typing import Any, TextIO

from probe.store.models import ExportRow

EXPORT_COLUMNS: tuple[str, ...] = (
    "measurement_id",
    "run_id",
    "service",
    "category",
    "input",
    "verdict",
    "layer",
    "detail",
    "rule",
    "measured_at",
    "duration_ms",
    "throughput_kbps",
    "baseline_kbps",
    "vantage_name",
    "network_type",
    "asn",
    "country",
)


def format_utc(moment: dt.datetime) -> str:
    """ISO-8601 in UTC with milliseconds and a "Z": 2026-11-29T01:02:03.456Z."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: cannot export it as UTC")
    text = moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


def export_record(row: ExportRow) -> dict[str, Any]:
    """One row as a plain dict, keys in EXPORT_COLUMNS order."""
    record = {name: getattr(row, name) for name in EXPORT_COLUMNS}
    record["measured_at"] = format_utc(row.measured_at)
    return record


def write_jsonl(rows: Iterable[ExportRow], out: TextIO) -> int:
    """Write one JSON object per line; return how many rows were written."""
    count = 0
    for row in rows:
        # ASCII-only JSON stays valid whatever encoding the output stream was opened with.
        out.write(json.dumps(export_record(row)))
        out.write("\n")
        count += 1
    return count


# What makes Excel, LibreOffice and Google Sheets read a cell as a formula (OWASP's list).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: None empty, text that a spreadsheet would evaluate quoted with '."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(rows: Iterable[ExportRow], out: TextIO) -> int:
    """Write a header and one CSV line per row; return how many rows were written."""
    # csv quotes a cell holding any character of the line terminator: with "\r\n" that is a
    # lone "\r" too, which "\n" alone leaves bare (and readers then split the row there).
    # Each row's own "\r\n" becomes "\n": text-mode stdout on Windows would make "\r\r\n".
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(cells: Iterable[Any]) -> None:
        writer.writerow(cells)
        out.write(buffer.getvalue()[:-2] + "\n")
        buffer.seek(0)
        buffer.truncate()

    line(EXPORT_COLUMNS)
    count = 0
    for row in rows:
        record = export_record(row)
        line([csv_cell(record[c]) for c in EXPORT_COLUMNS])
        count += 1
    return count
