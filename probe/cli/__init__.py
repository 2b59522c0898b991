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
import gc
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BUSY, EXIT_NO_CONSENT = 5, 6

# One module per command, each with register(sub), by the command names it registers.
# `probe CMD ...` builds the grammar of CMD alone (importing its module only: building every
# command's parser costs a quarter of a second on a small board, most of it modules the
# other commands use); `probe --help` and an unknown command build all of it. A command
# module imports only what its arguments need at the top, and the rest (the engine, the
# store, httpx, aiohttp) inside the function that runs it (tests/probe/test_cli_imports.py).
COMMANDS: dict[str, str] = {
    "run": "probe.cli.run",
    "daemon": "probe.cli.daemon_cmd",
    "status": "probe.cli.status",
    "consent": "probe.cli.consent_cmd",
    "prune": "probe.cli.prune",
    "export": "probe.cli.export",
    "list": "probe.cli.runs",
    "show": "probe.cli.runs",
    "targets": "probe.cli.targets_cmd",
    "config": "probe.cli.config_cmd",
    "helper": "probe.cli.helper_cmd",
    "report": "probe.cli.report_cmd",
    "upload": "probe.cli.upload_cmd",
    "collector": "probe.cli.collector_cmd",
}

# The errors a command may end with, and their exit codes, most specific first (SweepBusy
# is a StoreError). Named, not imported: an error of a module never imported was never raised.
_EXPECTED = (
    ("probe.store.owner", "SweepBusy", EXIT_BUSY),
    ("probe.config.consent", "ConsentRequired", EXIT_NO_CONSENT),
    ("probe.config.settings", "ConfigError", EXIT_USAGE),
    ("probe.store.errors", "StoreError", EXIT_USAGE),
    ("targets.model", "TargetErrors", EXIT_USAGE),
    ("probe.cli.errors", "UsageError", EXIT_USAGE),
)


def _exit_code(exc: BaseException) -> int | None:
    """The exit code of an expected error (printed as one line), or None for a bug."""
    for module, name, code in _EXPECTED:
        kind = getattr(sys.modules.get(module), name, None)
        if isinstance(kind, type) and isinstance(exc, kind):
            return code
    return None


def version() -> str:
    """The installed package's version (read from its metadata)."""
    from importlib import metadata

    try:
        return metadata.version("blocking-probe")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class _Version(argparse.Action):
    """--version: reads the package metadata only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"probe {version()}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage with our exit code and a hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _command_of(argv: Sequence[str] | None) -> str | None:
    """The command ``argv`` names (its first word that is not an option), if it is one."""
    for word in sys.argv[1:] if argv is None else argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = (), /) -> argparse.ArgumentParser:
    """The command-line grammar: of the command ``argv`` names, else of every command."""
    parser = _Parser(
        prog="probe",
        description="Measure whether social networks and messaging services are accessible, "
        "blocked or throttled from this network.",
        epilog="Exit codes: 0 done, 1 internal error, 2 bad usage or input, 3 sweep timed out, "
        "4 sweep failed (storage), 5 another sweep holds the database, 6 no consent yet "
        "(probe consent), 7 collector unavailable (probe upload), 130 interrupted, 143 terminated.",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    command = _command_of(argv)
    modules = [COMMANDS[command]] if command else list(dict.fromkeys(COMMANDS.values()))
    for module in modules:
        importlib.import_module(module).register(sub)
    return parser


def entry() -> NoReturn:
    """The console script and ``python -m probe``: main(), then exit with its code."""
    code = main()
    # Every object still alive is about to go: frozen, the interpreter's teardown does not
    # walk them all again in its collections (0.4 s of an offline sweep's 1 s, measured).
    gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line; its exit code (callers in this process keep going)."""
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:
        # Without the grammar of every command (a flag per setting, ~0.1 s on a small board):
        # the answer a packager or a bug report asks for should cost no more than Python.
        print(f"probe {version()}")
        return EXIT_OK
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except BrokenPipeError:  # `probe export | head`
        return EXIT_OK
    except Exception as exc:
        code = _exit_code(exc)
        if code is None:
            raise
        # The consent text is printed as it is; every other error as one line.
        print(exc if code == EXIT_NO_CONSENT else f"probe: {exc}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("\nprobe: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
