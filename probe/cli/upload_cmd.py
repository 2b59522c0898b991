"""``probe upload``: send the measurements the collector has not acknowledged yet (those
above its mark in ``meta``: probe/collector/outbox.py).

Exit codes: 0 everything pending was acknowledged (or ``--delete-mine`` done), 2 bad usage,
a bad setting, or the collector refused for good (a revoked token, a field it rejects: the
message names it), 7 the collector could not be reached or kept failing through every
retry (the mark covers what was acknowledged; the rest stays pending for the next upload).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from probe.cli.errors import UsageError
from probe.cli.options import add_setting_flags, setting_flags
from probe.cli.render import print_json
from probe.config import COLLECTOR_KEYS, CollectorSettings, load_collector_settings

EXIT_UNAVAILABLE = 7


def register(sub: Any) -> None:
    """Add the command to the parser."""
    p = sub.add_parser("upload", help="send unsent measurements to a central collector")
    p.add_argument("--db", metavar="PATH|URL", help="database (default: storage.db's)")
    p.add_argument("--delete-mine", action="store_true",
                   help="ask the collector to delete everything this token uploaded")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_setting_flags(p, keys=COLLECTOR_KEYS)
    p.set_defaults(handler=run)


def collector_settings(args: argparse.Namespace) -> CollectorSettings:
    """[collector] from flags, file, environment; a URL and a token are required."""
    settings = optional_collector(args)
    if settings is None:
        raise UsageError("no collector: give --collector URL (collector.url, PROBE_COLLECTOR_URL)")
    return settings


def optional_collector(args: argparse.Namespace) -> CollectorSettings | None:
    """[collector] when collector.url is set (None otherwise); with a URL a token is
    required (exit 2 without), for ``probe upload`` and the daemon alike."""
    settings = load_collector_settings(setting_flags(args), args.config)
    if settings.url is None:
        return None
    if settings.token is None:
        raise UsageError(
            "collector.url is set but there is no upload token: give --token-file FILE "
            "(collector.token_file) or set PROBE_COLLECTOR_TOKEN"
        )
    return settings


def run(args: argparse.Namespace) -> int:
    """Upload (or delete what this token uploaded); one summary."""
    from probe.cli.options import settings_from
    from probe.collector.client import CollectorUnavailable, Uploader, UploadRefused

    settings = collector_settings(args)
    assert settings.url is not None and settings.token is not None
    uploader = Uploader(settings.url, settings.token, batch_size=settings.batch_size,
                        say=lambda line: print(f"probe: {line}", file=sys.stderr))  # fmt: skip
    try:
        if args.delete_mine:
            return _delete(uploader, args.json)
        from probe.store.database import open_database

        target = args.db or settings_from(argparse.Namespace(config=args.config)).storage.db
        db = open_database(target)
        try:
            result = uploader.send(db)
        finally:
            db.close()
    except UploadRefused as exc:
        raise UsageError(str(exc)) from None
    except CollectorUnavailable as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        uploader.close()
    if args.json:
        print_json("upload", {name: getattr(result, name) for name in result.__slots__})
    else:
        print(f"sent {result.sent} measurements in {result.batches} batches "
              f"({result.stored} new to the collector, {result.duplicates} it had already); "
              f"{result.pending} still pending")  # fmt: skip
    return 0


def _delete(uploader: Any, as_json: bool) -> int:
    gone = uploader.delete_mine()
    if as_json:
        print_json("upload-delete", {"deleted": gone})
    else:
        print(f"the collector deleted {gone} measurements this token uploaded")
    return 0
