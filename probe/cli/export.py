"""``probe export``: stored measurements as JSON Lines or CSV, for researchers' tools."""

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
    from probe.store.models import ExportRow


def register(sub: Any) -> None:
    """Add the command to the parser."""
    p = sub.add_parser("export", help="export stored measurements (one row per input per run)")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("--since", metavar="TIME", help="only measurements at or after an ISO-8601 time")
    p.add_argument("--service", metavar="NAME", help="only this service")
    p.add_argument("--run", metavar="RUN_ID", help="only this run (a unique prefix is enough)")
    p.add_argument(
        "--services",
        action="store_true",
        help="one row per service per run (the service rule, with its scope), not per input",
    )
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE (atomically), not stdout")
    p.add_argument("--db", dest="setting:storage.db", metavar="PATH|URL", help="database")
    p.add_argument("--config", metavar="FILE", help="config file (TOML)")
    p.set_defaults(handler=export)


def parse_since(text: str) -> dt.datetime:
    """An ISO-8601 time or date; naive means UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since: not an ISO-8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def export(args: argparse.Namespace) -> int:
    """Stream the rows; a file output appears whole or not at all."""
    from probe.store.database import open_database

    since = parse_since(args.since) if args.since else None
    settings = settings_from(args)
    db = open_database(settings.storage.db, read_only=True)  # creates nothing
    try:
        run_id = None
        if args.run:
            run = db.get_run(args.run)
            if run is None:
                raise UsageError(f"--run: no run {args.run!r} in {db.label}")
            run_id = run.run_id
        rows = db.iter_export_rows(since=since, service=args.service, run_id=run_id)
        writer = _writer(args.format, args.services)
        if args.output is None:
            count = writer(rows, sys.stdout)
        else:
            count = _write_atomically(args.output, lambda out: writer(rows, out))
            print(f"{count} rows written to {args.output}", file=sys.stderr)
    finally:
        db.close()
    return 0


def _writer(fmt: str, services: bool) -> Callable[[Iterable[ExportRow], TextIO], int]:
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


def _write_atomically(path: str, write: Any) -> int:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".probe-export-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            count: int = write(out)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return count
