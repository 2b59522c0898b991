"""``probe run``: one sweep into the database, then a table per service (or JSON)."""

from __future__ import annotations

import argparse
import gc
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from probe.cli.errors import UsageError
from probe.cli.options import add_setting_flags, add_target_flags, settings_from
from probe.cli.render import ProgressBar

# What a sweep needs (the engine, the store, httpx, the TLS stack) is imported when the
# command runs, not when the parser is built: `probe --version` and the other commands must
# not pay for it (see probe/cli/__init__.py).
if TYPE_CHECKING:
    from measurements.geoip import GeoIP
    from probe.classify.verdict import MeasurementRecord
    from probe.config import Settings
    from probe.engine.sweep import Sweep, SweepResult
    from probe.store.database import Database
    from targets.model import TargetList

EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 4, 130, 143  # 128 + the signal's number
EXIT_FOR_STATUS = {"completed": 0, "offline": 0, "timed_out": 3}


def register(sub: Any) -> None:
    """Add the command to the parser."""
    p = sub.add_parser("run", help="run one sweep and store the results")
    add_target_flags(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_setting_flags(p)
    p.set_defaults(handler=run)


def load_target_list(paths: list[str] | None, category: str | None) -> TargetList:
    """The target lists named on the command line, or the bundled one."""
    from targets.citizenlab import parse_codes
    from targets.load import load_default, load_many

    if category and not paths:
        raise UsageError("--category applies to --targets lists; none was given")
    codes = parse_codes(category) if category else None
    return load_many(paths, codes) if paths else load_default()


def preload_trust(settings: Settings) -> None:
    """Read the trust anchors before the event loop starts (file I/O would stall it): the
    contexts the vantage check uses; the sweep builds the others once the vantage answered."""
    import ssl

    from measurements import trust
    from probe.config import ConfigError

    bundle = settings.network.ca_bundle
    try:
        trust.preload_references(bundle)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"network.ca_bundle: {bundle}: not a usable PEM bundle ({exc})") from None


def open_geoip_db(settings: Settings) -> GeoIP | None:
    """vantage.geoip_db opened and checked before the sweep (a bad file is bad usage)."""
    from measurements.geoip import GeoIPError, open_geoip
    from probe.config import ConfigError

    files = settings.vantage.geoip_db
    try:
        return open_geoip(files) if files else None
    except GeoIPError as exc:
        raise ConfigError(f"vantage.geoip_db: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Validate everything, then sweep; nothing is written if any input is bad, if the
    volunteer has not consented (ConsentRequired), or if another sweep holds the database
    (SweepBusy)."""
    # No collection while the modules load: they make thousands of objects that all stay
    # alive, and walking them again and again cost a start-up ~0.1 s. Collection resumes
    # (on what the sweep makes, not on them) when the sweep starts, or when this returns.
    gc.disable()
    try:
        return _checked_sweep(args)
    finally:
        # What _sweep froze is collectable again for a caller that goes on in this process
        # (the tests call main() many times); the console script freezes all before exit.
        gc.unfreeze()
        gc.enable()


def _checked_sweep(args: argparse.Namespace) -> int:
    from probe.config import require_consent
    from probe.store.database import open_database
    from probe.store.owner import sweep_lock

    settings = settings_from(args)
    targets = load_target_list(args.targets, args.category)
    preload_trust(settings)
    geoip = open_geoip_db(settings)
    require_consent(settings)  # after the checks: bad input is exit 2 whether or not consented
    with sweep_lock(settings.storage.db, "probe run") as lock:
        database = open_database(settings.storage.db, sweep=lock)
        try:
            return _sweep(args, settings, targets, database, geoip)
        finally:
            database.close()  # the writer closed it already; this is for an early error


def _sweep(
    args: argparse.Namespace,
    settings: Settings,
    targets: TargetList,
    database: Database,
    geoip: GeoIP | None,
) -> int:
    """The sweep itself, its signals and its output; the lock is held throughout."""
    import asyncio

    from probe.classify.fingerprints import load_bundled
    from probe.engine.sweep import Sweep
    from probe.store.database import StoreError
    from probe.store.writer import AsyncWriter

    fingerprints = load_bundled()
    # What is alive now (modules, classes, the settings, the target list) lives as long as
    # the process: frozen, the collector stops walking it again in every full collection of
    # the sweep and at exit (a tenth of the CPU of a 200-target sweep).
    gc.freeze()
    gc.enable()
    bar = ProgressBar(enabled=None if not (args.json or args.no_progress) else False)
    progress = _progress(bar)

    started: list[Sweep] = []
    terminated = False

    async def sweep() -> SweepResult:
        nonlocal terminated
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        assert main_task is not None

        def on_sigterm() -> None:
            # SIGTERM (systemd stop, docker stop, kill) ends the sweep as Ctrl-C does.
            nonlocal terminated
            if not terminated:  # once: a second SIGTERM must not cut short the finishing
                terminated = True
                main_task.cancel()

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        bar.update(0, len(targets.inputs()), "checking the reference hosts")
        writer = AsyncWriter(database)
        try:
            # The summary and the JSON need each input's verdict, not its evidence (stored).
            started.append(Sweep(settings, targets, writer, progress, fingerprints, geoip, False))
            return await started[0].run()
        finally:
            await asyncio.shield(writer.close())
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        result = asyncio.run(sweep())
    except (KeyboardInterrupt, asyncio.CancelledError):
        bar.close()
        how = "terminated" if terminated else "interrupted"
        print(f"probe: {how}; every input that finished is stored", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except StoreError as exc:
        # Not bad input (the database opened fine): the store failed during the sweep.
        bar.close()
        print(f"probe: the sweep failed: {exc}; {_failed_tail(started)}", file=sys.stderr)
        return EXIT_FAILED
    bar.close()
    return _report(args, result, database.label)


def _report(args: argparse.Namespace, result: SweepResult, db: str) -> int:
    """The finished sweep's output (a hint on stderr, the table or the JSON) and exit code."""
    from probe.cli.render import print_json
    from probe.engine.location import hint

    if (line := hint(result.location)) is not None:
        print(line, file=sys.stderr)  # once, and never in the JSON on stdout
    if args.json:
        print_json("run", _as_json(result, db))
    else:
        _print_human(result, db)
    return EXIT_FOR_STATUS.get(result.status, 1)


def _progress(bar: ProgressBar) -> Callable[[int, int, MeasurementRecord | None], None]:
    def progress(done: int, total: int, rec: MeasurementRecord | None) -> None:
        bar.update(done, total, rec.input if rec else "")

    return progress


def _failed_tail(started: list[Sweep]) -> str:
    """What a failed sweep left behind, for its one message."""
    if not started or not started[0].begun:
        return "no run was recorded"
    run, stored = started[0].run_id[:8], len(started[0].records)
    kept = f"the {stored} inputs that finished are stored"
    if started[0].status_recorded:
        return f"run {run} is marked failed; {kept}"
    return f"{kept}; run {run} could not be marked failed, so the next sweep marks it aborted"


def _as_json(result: SweepResult, db: str) -> dict[str, Any]:
    from probe.classify.service import summarize_services
    from probe.cli.render import location_json

    return {
        "run_id": result.run_id,
        "status": result.status,
        "database": db,
        "duration_s": round(result.duration_s, 3),
        "inputs_total": result.total,
        "vantage_ok": result.vantage.ok,
        "location": location_json(result.location),
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
    from probe.classify.service import scope_text, summarize_services
    from probe.cli.render import table

    rows = [
        (s.service, s.verdict, s.detail, scope_text(s), f"{s.agreeing}/{s.inputs}")
        for s in summarize_services(result.records)
    ]
    print(table(("service", "verdict", "detail", "scope", "inputs"), rows))
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
