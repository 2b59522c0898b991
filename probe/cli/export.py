"""``probe export``: stored measurements as JSON Lines, CSV, OONI's data format or Parquet.

What each format holds is in probe/store/export.py (columns), ooni.py and parquet.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TextIO

from probe.cli.errors import UsageError
from probe.cli.options import settings_from

if TYPE_CHECKING:  # the store is imported when the command runs (probe/cli/__init__.py)
    from probe.store.database import Database
    from probe.store.rows import ExportRow

FORMATS = ("jsonl", "csv", "ooni", "parquet")


def register(sub: Any) -> None:
    """Add the command to the parser."""
    p = sub.add_parser("export", help="export stored measurements (one row per input per run)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="jsonl",
        help="jsonl, csv, ooni (OONI's data format, one measurement per line with its "
        "observations) or parquet (typed columns; needs pyarrow and --output)",
    )
    p.add_argument("--since", metavar="TIME", help="only measurements at or after an ISO-8601 time")
    p.add_argument("--until", metavar="TIME", help="only measurements before an ISO-8601 time")
    p.add_argument("--service", metavar="NAME", help="only this service")
    p.add_argument("--run", metavar="RUN_ID", help="only this run (a unique prefix is enough)")
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--services",
        action="store_true",
        help="one row per service per run (the service rule, with its scope), not per input",
    )
    what.add_argument(
        "--outages",
        action="store_true",
        help="the outage windows (a vantage that reached no reference host), not measurements",
    )
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE (atomically), not stdout")
    p.add_argument("--db", dest="setting:storage.db", metavar="PATH|URL", help="database")
    p.add_argument("--config", metavar="FILE", help="config file (TOML)")
    p.set_defaults(handler=export)


def parse_since(text: str, flag: str = "--since") -> dt.datetime:
    """An ISO-8601 time or date; naive means UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{flag}: not an ISO-8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def window(args: argparse.Namespace) -> tuple[dt.datetime | None, dt.datetime | None]:
    """--since and --until as times; until must come after since."""
    since = parse_since(args.since) if args.since else None
    until = parse_since(args.until, "--until") if args.until else None
    if since and until and since >= until:
        raise UsageError(f"--until: {args.until!r} is not after --since {args.since!r}")
    return since, until


def check_combination(args: argparse.Namespace) -> None:
    """Refuse what cannot be written, before the database is opened."""
    if args.format in ("ooni", "parquet") and (args.services or args.outages):
        what = "--services" if args.services else "--outages"
        raise UsageError(f"--format {args.format} exports measurements: {what} takes jsonl or csv")
    if args.outages and (args.service or args.run or args.until):
        raise UsageError("--outages: --service, --run and --until select measurements, not outages")
    if args.format == "parquet" and args.output is None:
        raise UsageError("--format parquet writes a binary file: give --output FILE")


def export(args: argparse.Namespace) -> int:
    """Stream the rows; a file output appears whole or not at all."""
    check_combination(args)
    since, until = window(args)
    if args.format == "parquet":
        from probe.store.parquet import ParquetUnavailable, schema

        try:
            schema()  # pyarrow is there: say so before reading anything
        except ParquetUnavailable as exc:
            raise UsageError(str(exc)) from None
    from probe.store.database import open_database

    settings = settings_from(args)
    db = open_database(settings.storage.db, read_only=True)  # creates nothing
    try:
        run_id = _run_id(db, args.run)
        if args.format == "parquet":
            rows = db.iter_export_rows(since, args.service, run_id, until)
            count = _parquet(rows, args.output)
        else:
            writer = _writer(db, args, (since, until), run_id)
            if args.output is None:
                count = writer(sys.stdout)
            else:
                count = _write_atomically(args.output, writer)
        if args.output is not None:
            print(f"{count} rows written to {args.output}", file=sys.stderr)
    finally:
        db.close()
    return 0


def _run_id(db: Database, prefix: str | None) -> str | None:
    if not prefix:
        return None
    run = db.get_run(prefix)
    if run is None:
        raise UsageError(f"--run: no run {prefix!r} in {db.label}")
    return run.run_id


def _writer(
    db: Database,
    args: argparse.Namespace,
    times: tuple[dt.datetime | None, dt.datetime | None],
    run_id: str | None,
) -> Callable[[TextIO], int]:
    """What writes the chosen rows in the chosen text format to a stream."""
    from probe.store import queries
    from probe.store.daemon_state import iter_outages
    from probe.store.export import (
        OUTAGE_COLUMNS,
        outage_records,
        write_csv_records,
        write_jsonl_records,
    )
    from probe.store.ooni import write_ooni

    since, until = times
    if args.outages:
        records = outage_records(iter_outages(db, since))
        if args.format == "jsonl":
            return lambda out: write_jsonl_records(records, out)
        return lambda out: write_csv_records(records, OUTAGE_COLUMNS, out)
    if args.format == "ooni":
        sources = queries.export_sources(db, since, args.service, run_id, until)
        return lambda out: write_ooni(sources, out)
    rows = db.iter_export_rows(since, args.service, run_id, until)
    write = _row_writer(args.format, args.services)
    return lambda out: write(rows, out)


def _row_writer(fmt: str, services: bool) -> Callable[[Iterable[ExportRow], TextIO], int]:
    """How rows are written: per input as stored, or per service by the service rule."""
    from probe.store.export import (
        SERVICE_COLUMNS,
        service_records,
        write_csv,
        write_csv_records,
        write_jsonl,
        write_jsonl_records,
    )

    if not services:
        return write_jsonl if fmt == "jsonl" else write_csv
    if fmt == "jsonl":
        return lambda rows, out: write_jsonl_records(service_records(rows), out)
    return lambda rows, out: write_csv_records(service_records(rows), SERVICE_COLUMNS, out)


def _temporary(path: str) -> tuple[int, str]:
    """A new file beside ``path`` (same file system, so os.replace is atomic)."""
    directory = os.path.dirname(os.path.abspath(path))
    return tempfile.mkstemp(dir=directory, prefix=".probe-export-")


def _write_atomically(path: str, write: Callable[[TextIO], int]) -> int:
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            count = write(out)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return count


def _parquet(rows: Iterable[ExportRow], path: str) -> int:
    from probe.store.parquet import write_parquet  # pyarrow is optional: loaded on demand

    fd, tmp = _temporary(path)
    os.close(fd)  # pyarrow opens the path itself
    try:
        count = write_parquet(rows, tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return count
