"""``probe run``: one sweep into the database, then a table per service (or JSON)."""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from typing import Any

from measurements import trust
from probe.cli.errors import UsageError
from probe.cli.options import add_setting_flags, settings_from
from probe.cli.render import ProgressBar, print_json, table
from probe.config import ConfigError, Settings
from probe.fingerprints import load_bundled
from probe.report import summarize_services
from probe.store.database import open_database
from probe.store.writer import AsyncWriter
from probe.sweep import Sweep, SweepResult
from probe.verdict import MeasurementRecord
from targets.citizenlab import parse_codes
from targets.load import load_default, load_many
from targets.model import TargetList

EXIT_FOR_STATUS = {"completed": 0, "offline": 0, "timed_out": 3, "interrupted": 130}


def register(sub: Any) -> None:
    """Add the command to the parser."""
    p = sub.add_parser("run", help="run one sweep and store the results")
    p.add_argument(
        "--targets",
        action="append",
        metavar="FILE",
        help="target list (TOML, or a Citizen Lab .csv); repeatable; default: the bundled list",
    )
    p.add_argument(
        "--category", metavar="CODES", help="for .csv lists: category codes to keep, e.g. GRP,COMT"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_setting_flags(p)
    p.set_defaults(handler=run)


def load_target_list(paths: list[str] | None, category: str | None) -> TargetList:
    """The target lists named on the command line, or the bundled one."""
    if category and not paths:
        raise UsageError("--category applies to --targets lists; none was given")
    codes = parse_codes(category) if category else None
    return load_many(paths, codes) if paths else load_default()


def _preload(settings: Settings) -> None:
    """Read the trust anchors before the event loop starts (file I/O would stall it)."""
    bundle = settings["network.ca_bundle"]
    try:
        trust.preload(bundle)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"network.ca_bundle: {bundle}: not a usable PEM bundle ({exc})") from None


def run(args: argparse.Namespace) -> int:
    """Validate everything, then sweep; nothing is written if any input is bad."""
    settings = settings_from(args)
    targets = load_target_list(args.targets, args.category)
    _preload(settings)
    fingerprints = load_bundled()
    database = open_database(settings["storage.db"])
    bar = ProgressBar(enabled=None if not (args.json or args.no_progress) else False)

    def progress(done: int, total: int, rec: MeasurementRecord | None) -> None:
        bar.update(done, total, rec.input if rec else "")

    async def sweep() -> SweepResult:
        bar.update(0, len(targets.inputs()), "checking the reference hosts")
        writer = AsyncWriter(database)
        try:
            return await Sweep(settings, targets, writer, progress, fingerprints).run()
        finally:
            await asyncio.shield(writer.close())

    try:
        result = asyncio.run(sweep())
    except KeyboardInterrupt:
        bar.close()
        print("probe: interrupted; every input that finished is stored", file=sys.stderr)
        return 130
    bar.close()
    if args.json:
        print_json("run", _as_json(result, database.label))
    else:
        _print_human(result, database.label)
    return EXIT_FOR_STATUS.get(result.status, 1)


def _as_json(result: SweepResult, db: str) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "status": result.status,
        "database": db,
        "duration_s": round(result.duration_s, 3),
        "inputs_total": result.total,
        "vantage_ok": result.vantage.ok,
        "services": [vars_of(s) for s in summarize_services(result.records)],
        "measurements": [
            {
                "service": r.service,
                "input": r.input,
                "verdict": r.verdict.verdict,
                "layer": r.verdict.layer,
                "detail": r.verdict.detail,
                "rule": r.verdict.rule,
                "reason": r.verdict.reason,
            }
            for r in result.records
        ],
    }


def vars_of(obj: Any) -> dict[str, Any]:
    """A slots dataclass as a dict."""
    return {name: getattr(obj, name) for name in obj.__slots__}


def _print_human(result: SweepResult, db: str) -> None:
    rows = [
        (s.service, s.verdict, s.detail, f"{s.agreeing}/{s.inputs}")
        for s in summarize_services(result.records)
    ]
    print(table(("service", "verdict", "detail", "inputs"), rows))
    print()
    if not result.vantage.ok:
        print(
            "No reference host answered: this vantage looks offline (or behind a captive portal)."
            "\nNo target was contacted; every input is recorded as inconclusive (vantage.offline)."
        )
    stored = len(result.records)
    print(
        f"run {result.run_id}: {result.status}, {stored}/{result.total} inputs stored in {db} "
        f"({result.duration_s:.1f} s)"
    )
    print(
        f"details: probe show {result.run_id[:8]}    export: probe export --run {result.run_id[:8]}"
    )
