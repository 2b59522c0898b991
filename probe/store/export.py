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
    reason           the sentence the verdict was written with, from the evidence (text);
                     "(pruned)" once retention deleted that evidence (storage.retention)

``reason`` came after the other columns were published: it is the last column, not next to
``rule``, so a program that reads the first 17 columns by position reads them as before (a
CSV reader by header name never noticed). A reason is free text from the classifier and may
quote what a network answered, so in CSV it gets the same formula guard as every text cell.

JSONL: one object per line, keys in that order, null for missing values.
CSV: a header row, then one row per measurement; an empty cell is null; lines end in "\\n".
A text cell that starts with "=", "+", "-", "@", a tab or a carriage return gets a leading "'",
as spreadsheets expect, so opening an export never runs a formula that a target list (or a
network's answer) put there; numbers are written as they are.
The volunteer's IP address is not a column: the database never holds it. Evidence and
observations are not in these columns (they are per-measurement detail: `probe show`, or
``--format ooni``, ooni.py, which maps them to OONI's data format). ``--format parquet``
writes the same columns typed (parquet.py).

``--services`` exports one row per service per run instead, computed from those same rows by
the service rule (probe.classify.service; services are not stored, so the rule an export
applies is always the probe's current one), in SERVICE_COLUMNS order:

    run_id, service, category, verdict, layer, detail
    scope            "all" | "partial" | null: whether every conclusive input is blocked or
                     throttled, some are, or none is
    affected         inputs blocked or throttled
    conclusive       inputs accessible, blocked or throttled (inconclusive ones say nothing)
    inputs           every input of the service in the run
    accessible, blocked, throttled, inconclusive   inputs with each verdict
    first_measured_at  when the run measured the service's first input (ISO-8601 UTC, "Z")
    vantage_name, network_type, asn, country

``--outages`` exports the outage windows instead (the daemon's ``outages`` table: a vantage
that could reach no reference host), in OUTAGE_COLUMNS order:

    vantage_name     as declared, or null
    started_at       ISO-8601 UTC, "Z": when a sweep found the vantage offline
    ended_at         when a later sweep found it online again; null while it is still out
    detected_by      "sweep"
    network          the network's digest when it went out (daemon_sweeps.network), or null
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from probe.classify.service import ServiceTally
from probe.store.rows import ExportRow

if TYPE_CHECKING:
    from probe.store.daemon_state import OutageRow

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
    "reason",
)


SERVICE_COLUMNS: tuple[str, ...] = (
    "run_id", "service", "category", "verdict", "layer", "detail", "scope", "affected",
    "conclusive", "inputs", "accessible", "blocked", "throttled", "inconclusive",
    "first_measured_at", "vantage_name", "network_type", "asn", "country",
)  # fmt: skip
# ``--outages``: one row per window in which a vantage could reach no reference host.
OUTAGE_COLUMNS: tuple[str, ...] = (
    "vantage_name", "started_at", "ended_at", "detected_by", "network",
)  # fmt: skip
_VERDICTS = ("accessible", "blocked", "throttled", "inconclusive")


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


def service_records(rows: Iterable[ExportRow]) -> list[dict[str, Any]]:
    """One row per service per run, by the service rule, keys in SERVICE_COLUMNS order."""
    # Only counts are held per (run, service), so a long export's rows stream through.
    groups: dict[tuple[str, str], tuple[ServiceTally, ExportRow]] = {}
    for row in rows:
        key = (row.run_id, row.service)
        if key not in groups:
            groups[key] = (ServiceTally(row.service), row)
        groups[key][0].add(row.verdict, row.detail, row.layer)
    out = []
    for tally, first in groups.values():
        s = tally.summary()
        out.append({
            "run_id": first.run_id, "service": s.service, "category": first.category,
            "verdict": s.verdict, "layer": s.layer, "detail": s.detail, "scope": s.scope,
            "affected": s.affected, "conclusive": s.conclusive, "inputs": s.inputs,
            **{v: s.counts.get(v, 0) for v in _VERDICTS},
            "first_measured_at": format_utc(first.measured_at),
            "vantage_name": first.vantage_name, "network_type": first.network_type,
            "asn": first.asn, "country": first.country,
        })  # fmt: skip
    return out


def outage_records(outages: Iterable[OutageRow]) -> Iterator[dict[str, Any]]:
    """Outage windows as plain dicts in OUTAGE_COLUMNS order (ended_at None: still open)."""
    for o in outages:
        yield {
            "vantage_name": o.vantage_name,
            "started_at": format_utc(o.started_at),
            "ended_at": format_utc(o.ended_at) if o.ended_at is not None else None,
            "detected_by": o.detected_by,
            "network": o.network,
        }


def write_jsonl(rows: Iterable[ExportRow], out: TextIO) -> int:
    """Write one JSON object per line; return how many rows were written."""
    return write_jsonl_records(map(export_record, rows), out)


def write_jsonl_records(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    """Write plain records one JSON object per line; return how many were written."""
    count = 0
    for record in records:
        # ASCII-only JSON stays valid whatever encoding the output stream was opened with.
        out.write(json.dumps(record))
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
    return write_csv_records(map(export_record, rows), EXPORT_COLUMNS, out)


def write_csv_records(
    records: Iterable[dict[str, Any]], columns: tuple[str, ...], out: TextIO
) -> int:
    """Write a header of ``columns`` and one CSV line per record; return how many."""
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

    line(columns)
    count = 0
    for record in records:
        line([csv_cell(record[c]) for c in columns])
        count += 1
    return count
