"""``probe list`` (recent runs) and ``probe show`` (a run, or one measurement's evidence)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from probe.cli.errors import UsageError
from probe.cli.options import settings_from
from probe.cli.render import location_json, print_json, table

# Heavy imports (the store, SQLAlchemy) wait for the command to run: building the parser
# must stay cheap for every command (probe/cli/__init__.py).
if TYPE_CHECKING:
    from probe.classify.service import ServiceSummary
    from probe.store.database import Database
    from probe.store.rows import MeasurementRow


def register(sub: Any) -> None:
    """Add the commands to the parser."""
    p = sub.add_parser("list", help="list recent runs")
    p.add_argument("--limit", type=int, default=20, metavar="N")
    _common(p)
    p.set_defaults(handler=list_runs)
    p = sub.add_parser("show", help="show a run's verdicts, or one measurement's evidence")
    p.add_argument("what", metavar="RUN_OR_MEASUREMENT", help="a run id (or prefix) or a number")
    _common(p)
    p.set_defaults(handler=show)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--db", dest="setting:storage.db", metavar="PATH|URL", help="database")
    p.add_argument("--config", metavar="FILE", help="config file (TOML)")


def _open(args: argparse.Namespace) -> Database:
    """Read-only: reading never creates a database, a folder or a side file."""
    from probe.store.database import open_database

    return open_database(settings_from(args).storage.db, read_only=True)


def list_runs(args: argparse.Namespace) -> int:
    """Recent runs, newest first."""
    from probe.store.export import format_utc

    db = _open(args)
    try:
        runs = db.list_runs(limit=args.limit)
    finally:
        db.close()
    if args.json:
        print_json("runs", {"runs": [_run_json(r) for r in runs]})
        return 0
    if not runs:
        print(f"no runs yet in {db.label}")
        return 0
    rows = [
        (
            r.run_id[:12], format_utc(r.started_at), r.status, r.vantage.name or "",
            r.measurements,
            ", ".join(f"{v} {n}" for v, n in sorted(r.verdicts.items()) if n),
        )
        for r in runs
    ]  # fmt: skip
    print(table(("run", "started (UTC)", "status", "vantage", "inputs", "verdicts"), rows))
    return 0


def _run_json(r: Any) -> dict[str, Any]:
    from probe.store.export import format_utc

    return {
        "run_id": r.run_id,
        "started_at": format_utc(r.started_at),
        "finished_at": format_utc(r.finished_at) if r.finished_at else None,
        "status": r.status,
        "probe_version": r.probe_version,
        "vantage": {
            "name": r.vantage.name, "network_type": r.vantage.network_type,
            "asn": r.vantage.asn, "country": r.vantage.country,
        },
        "location": location_json(r.location),
        "measurements": r.measurements,
        "verdicts": dict(r.verdicts),
    }  # fmt: skip


def show(args: argparse.Namespace) -> int:
    """A measurement when given a number, else a run by id or prefix."""
    from probe.classify.service import scope_text
    from probe.store.export import format_utc

    db = _open(args)
    try:
        if args.what.isdigit() and len(args.what) < 6:
            return _show_measurement(db, int(args.what), args.json)
        run = db.get_run(args.what)
        if run is None:
            if args.what.isdigit():
                return _show_measurement(db, int(args.what), args.json)
            raise UsageError(f"no run or measurement {args.what!r} in {db.label}")
        rows = db.measurements_of_run(run.run_id)
    finally:
        db.close()
    services = _services(rows)
    if args.json:
        payload = _run_json(run)
        payload["services"] = [_service_json(s) for s in services]
        payload["rows"] = [
            {
                "id": m.id, "service": m.service, "input": m.input, "verdict": m.verdict,
                "layer": m.layer, "detail": m.detail, "rule": m.rule, "reason": m.reason,
            }
            for m in rows
        ]  # fmt: skip
        print_json("run", payload)
        return 0
    print(f"run {run.run_id}  {run.status}  started {format_utc(run.started_at)}")
    print(table(
        ("service", "verdict", "detail", "scope", "inputs"),
        [(s.service, s.verdict, s.detail, scope_text(s), f"{s.agreeing}/{s.inputs}")
         for s in services],
    ))  # fmt: skip
    print()
    print(table(
        ("id", "service", "input", "verdict", "detail"),
        [(m.id, m.service, m.input, m.verdict, m.detail) for m in rows],
    ))  # fmt: skip
    print("\nevidence of one input: probe show ID")
    return 0


def _services(rows: list[MeasurementRow]) -> list[ServiceSummary]:
    """The run's services by the service rule, computed from its stored rows."""
    from probe.classify.service import summarize_rows

    return summarize_rows((m.service, m.verdict, m.detail, m.layer) for m in rows)


def _service_json(s: ServiceSummary) -> dict[str, Any]:
    return {name: getattr(s, name) for name in s.__slots__}


def _show_measurement(db: Database, measurement_id: int, as_json: bool) -> int:
    from probe.store.export import format_utc

    detail = db.get_measurement(measurement_id)
    if detail is None:
        raise UsageError(f"no measurement {measurement_id} in {db.label}")
    m = detail.row
    controls = control_lines(detail.evidence)
    if as_json:
        print_json(
            "measurement",
            {"id": m.id, "row": _row_json(m), "controls": controls, "evidence": detail.evidence},
        )
        return 0
    print(f"measurement {m.id} of run {m.run_id[:12]}  {format_utc(m.measured_at)}")
    print(f"  {m.service}  {m.input}")
    print(f"  verdict: {m.verdict}  layer: {m.layer or '-'}  detail: {m.detail}  rule: {m.rule}")
    print(f"  why: {m.reason}")
    if m.throughput_kbps is not None:
        baseline = "-" if m.baseline_kbps is None else f"{m.baseline_kbps:.0f} kbit/s"
        print(f"  throughput: {m.throughput_kbps:.0f} kbit/s  baseline: {baseline}")
    if not detail.evidence:
        print("  evidence: pruned (older than the retention window: storage.retention)")
        return 0
    if controls is None:
        print("  controls: not recorded (measured by an older probe: see the evidence)")
    else:
        print("  controls:")
        rows = [
            (c["name"], _yes(c["configured"]), _yes(c["asked"]), c["outcome"], c["detail"])
            for c in controls
        ]
        shown = table(("control", "configured", "asked", "outcome", "detail"), rows)
        print("\n".join("    " + line for line in shown.splitlines()))
    print("  evidence:")
    text = json.dumps(detail.evidence, indent=2, ensure_ascii=False, default=str)
    print("\n".join("    " + line for line in text.splitlines()))
    return 0


def control_lines(evidence: Any) -> list[dict[str, Any]] | None:
    """The measurement's control status lines (None when its probe did not record them)."""
    found = evidence.get("verdict_evidence", {}).get("control_status")
    return found if isinstance(found, list) else None


def _yes(flag: Any) -> str:
    return "yes" if flag else "no"


def _row_json(m: Any) -> dict[str, Any]:
    from probe.store.export import format_utc

    out = {name: getattr(m, name) for name in m.__slots__}
    out["measured_at"] = format_utc(m.measured_at)
    return out
