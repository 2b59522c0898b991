"""``probe prune``: delete evidence past a window (verdict rows stay) and give space back."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import TYPE_CHECKING, Any

from probe.cli.errors import UsageError
from probe.cli.options import settings_from
from probe.cli.render import ProgressBar, print_json
from probe.config import parse_retention
from probe.config.sections import duration_seconds

if TYPE_CHECKING:  # the store is imported when the command runs (probe/cli/__init__.py)
    from probe.store.retention import PruneResult

# retention.NO_CUTOFF, without importing the store to print a summary.
NO_CUTOFF = dt.datetime(1, 1, 1, tzinfo=dt.UTC)


def register(sub: Any) -> None:
    """Add the command to the parser."""
    p = sub.add_parser("prune", help="delete evidence older than a window; verdicts are kept")
    p.add_argument(
        "--older-than",
        metavar="AGE",
        help="delete the evidence of measurements older than this: 90d, 36h, 2w "
        "(default: storage.retention)",
    )
    p.add_argument(
        "--accessible-older-than",
        metavar="AGE",
        help="and the evidence of accessible verdicts older than this, if sooner "
        "(default: storage.retention_accessible)",
    )
    p.add_argument("--db", dest="setting:storage.db", metavar="PATH|URL", help="database")
    p.add_argument("--config", metavar="FILE", help="config file (TOML)")
    p.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def window(text: str, flag: str = "--older-than") -> dt.timedelta:
    """An age flag as a timedelta; "never" makes no sense for a prune."""
    try:
        seconds = duration_seconds(parse_retention(text))
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    if seconds is None:
        raise UsageError(f"{flag}: give an age such as 90d (never would prune nothing)")
    return dt.timedelta(seconds=seconds)


def run(args: argparse.Namespace) -> int:
    """Prune, with a progress bar on a terminal, then one summary."""
    from probe.store.retention import prune

    settings = settings_from(args)
    older_than = settings.storage.retention_window
    if args.older_than is not None:
        older_than = window(args.older_than)
    accessible = settings.storage.accessible_window
    if args.accessible_older_than is not None:
        accessible = window(args.accessible_older_than, "--accessible-older-than")
    if older_than is None and accessible is None:
        print("probe: storage.retention is never: nothing to prune (or give --older-than)")
        return 0
    bar = ProgressBar(enabled=None if not (args.json or args.no_progress) else False)
    result = prune(
        settings.storage.db,
        older_than,
        accessible_older_than=accessible,
        dry_run=args.dry_run,
        progress=lambda done, total: bar.update(done, total, "deleting old evidence"),
    )
    bar.close()
    if args.json:
        print_json("prune", {name: getattr(result, name) for name in result.__slots__})
    else:
        print(summary(result))
    return 0


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


def summary(r: PruneResult) -> str:
    """The one-paragraph summary of a prune."""
    verb = "would delete" if r.dry_run else "deleted"
    ages = [] if r.cutoff == NO_CUTOFF else [f"measured before {r.cutoff:%Y-%m-%d %H:%M} UTC"]
    if r.accessible_cutoff != r.cutoff:
        ages.append(f"accessible and measured before {r.accessible_cutoff:%Y-%m-%d %H:%M} UTC")
    lines = [
        f"{verb} the evidence of {r.evidence_deleted} measurements {' or '.join(ages)}",
        f"kept {r.measurements_kept} verdict rows of {r.runs_kept} runs in {r.database}",
    ]
    if not r.dry_run:
        lines.append(f"size {_mb(r.bytes_before)} -> {_mb(r.bytes_after)}; space: {r.reclaimed}")
    return "\n".join(lines)
