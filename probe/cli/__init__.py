"""The ``probe`` command: parses arguments, dispatches to one module per command.

Exit codes (README, "Exit codes"):
    0   the command did what was asked (for ``run``: the sweep completed, whatever the verdicts)
    1   an internal error (a bug: please report it with the traceback)
    2   bad usage or bad input: a flag, the config file, a target file, the database
    3   the sweep stopped early: it ran past --sweep-timeout (what finished is kept)
    4   the sweep failed: the store failed during it, e.g. a full disk (what finished is kept)
    5   another sweep (probe run or probe daemon) holds the database: nothing was done
    6   no consent yet: the text was printed, nothing was measured (probe consent --accept)
    7   probe upload: the collector could not be reached or kept failing through every retry
    130 interrupted by Ctrl-C (what finished is kept)
    143 terminated by SIGTERM (what finished is kept)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from probe.cli import (
    collector_cmd,
    config_cmd,
    consent_cmd,
    daemon_cmd,
    export,
    helper_cmd,
    prune,
    report_cmd,
    runs,
    status,
    targets_cmd,
    upload_cmd,
)
from probe.cli import run as run_cmd
from probe.cli.errors import UsageError
from probe.config import ConfigError, ConsentRequired
from probe.store.database import StoreError
from probe.store.owner import SweepBusy
from targets.model import TargetErrors

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BUSY, EXIT_NO_CONSENT = 5, 6


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage with our exit code and a hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full command-line grammar."""
    parser = _Parser(
        prog="probe",
        description="Measure whether social networks and messaging services are accessible, "
        "blocked or throttled from this network.",
        epilog="Exit codes: 0 done, 1 internal error, 2 bad usage or input, 3 sweep timed out, "
        "4 sweep failed (storage), 5 another sweep holds the database, 6 no consent yet "
        "(probe consent), 7 collector unavailable (probe upload), 130 interrupted, 143 terminated.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    modules = (
        run_cmd, daemon_cmd, status, consent_cmd, prune, export, report_cmd, runs, targets_cmd,
        config_cmd, helper_cmd, upload_cmd, collector_cmd,
    )  # fmt: skip
    for module in modules:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except SweepBusy as exc:  # before StoreError, which it is
        print(f"probe: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except ConsentRequired as exc:
        print(exc, file=sys.stderr)
        return EXIT_NO_CONSENT
    except (ConfigError, StoreError, TargetErrors, UsageError) as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nprobe: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `probe export | head`
        return EXIT_OK
