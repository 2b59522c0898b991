"""``probe report``: per service and vantage, what was blocked or throttled, since when, at
which hours, at what rates; as text tables, versioned JSON, or one self-contained HTML page.

Read only, like export: a missing database is exit 2 and nothing is ever created.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from probe.cli.errors import UsageError
from probe.cli.options import settings_from
from probe.report.model import Filters

if TYPE_CHECKING:  # the store and the queries are imported when the command runs
    from probe.store.database import Database

_COUNTRY = re.compile(r"[A-Za-z]{2}")
_ASN = re.compile(r"(?:AS)?(\d{1,10})", re.IGNORECASE)
MAX_ASN = 2**32 - 1


def register(sub: Any) -> None:
    """Add the command to the parser."""
    p = sub.add_parser(
        "report", help="report blocking and throttling per service and vantage (text, json, html)"
    )
    p.add_argument("--since", metavar="TIME", help="results at or after an ISO-8601 time or date")
    p.add_argument("--until", metavar="TIME", help="results before an ISO-8601 time or date")
    p.add_argument(
        "--service", action="append", metavar="NAME", help="only this service (repeatable)"
    )
    p.add_argument("--vantage", metavar="NAME", help="only runs of this vantage name")
    p.add_argument("--country", metavar="CC", help="only runs in this country (ISO 3166 alpha-2)")
    p.add_argument("--asn", metavar="ASN", help="only runs in this AS (123 or AS123)")
    p.add_argument("--format", choices=("text", "json", "html"), default="text")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE (atomically), not stdout")
    p.add_argument("--db", dest="setting:storage.db", metavar="PATH|URL", help="database")
    p.add_argument("--config", metavar="FILE", help="config file (TOML)")
    p.set_defaults(handler=report)


def parse_time(flag: str, text: str) -> dt.datetime:
    """An ISO-8601 time or date; naive means UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{flag}: not an ISO-8601 time or date: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def filters_from(args: argparse.Namespace) -> Filters:
    """The report's scope from the flags; bad values are a UsageError naming the flag."""
    since = parse_time("--since", args.since) if args.since else None
    until = parse_time("--until", args.until) if args.until else None
    if since and until and since >= until:
        raise UsageError(f"--until: {args.until!r} is not after --since {args.since!r}")
    country = None
    if args.country is not None:
        if not _COUNTRY.fullmatch(args.country):
            raise UsageError(f"--country: expected two letters (e.g. KZ), got {args.country!r}")
        country = args.country.upper()
    asn = None
    if args.asn is not None:
        match = _ASN.fullmatch(args.asn.strip())
        if not match or not 0 < int(match[1]) <= MAX_ASN:
            raise UsageError(
                f"--asn: expected an AS number (e.g. 9198 or AS9198), got {args.asn!r}"
            )
        asn = int(match[1])
    services = tuple(args.service or ())
    for name in services:
        if not name.strip():
            raise UsageError("--service: empty name")
    if args.vantage is not None and not args.vantage.strip():
        raise UsageError("--vantage: empty name")
    return Filters(since, until, services, args.vantage, country, asn)


def report(args: argparse.Namespace) -> int:
    """Build the report and write it; a file output appears whole or not at all."""
    from probe.store.database import open_database

    filters = filters_from(args)
    settings = settings_from(args)
    db = open_database(settings.storage.db, read_only=True)  # creates nothing
    try:
        write = _writer(args.format, db, filters)
        if args.output is None:
            write(sys.stdout)
        else:
            _write_atomically(args.output, write)
            print(f"report written to {args.output}", file=sys.stderr)
    finally:
        db.close()
    return 0


def _writer(fmt: str, db: Database, filters: Filters) -> Callable[[TextIO], None]:
    """Query first (so an error leaves no file), then a function that writes the output."""
    from probe.report.query import build_report
    from probe.report.serialize import report_json
    from probe.report.text import render

    result = build_report(db, filters)
    if fmt == "json":
        payload = report_json(result)

        def write_json(out: TextIO) -> None:
            json.dump(payload, out, indent=1)
            out.write("\n")

        return write_json
    if fmt == "html":
        from probe.report.html import page  # matplotlib only when a page is asked for
        from probe.report.plotdata import plot_data

        text = page(result, plot_data(db, result))
    else:
        text = render(result)

    def write_text(out: TextIO) -> None:
        out.write(text)

    return write_text


def _write_atomically(path: str, write: Callable[[TextIO], None]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".probe-report-")
    except OSError as exc:
        raise UsageError(f"--output: cannot write in {directory}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            write(out)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would make it, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
