"""Throughput benchmark: how close the probe's measured rate comes to each lab shaper's rate.

Brings the censorship lab up (or reuses one already running and healthy), runs every
scenario of tests/lab/scenarios that shapes traffic (a ``[shaper]``: the SNI policers, the
IP shaper, the delayed throttle, and the slow home link and the slow server, which must come
out not throttled), each through the real ``probe run`` as bench/accuracy.py does, then prints:

    a table     scenario, the configured rate (kbit/s), the rate the lab's own self-check
                measured from the vantage, the probe's ``throughput_kbps`` (``probe
                export``), its relative error against the configured rate, the verdict
                (detail or rule) and the probe's per-trial rates (and where a rate fell)
    last line   throughput: N/M shaped scenarios within 15% of the configured rate ...

The configured rate is what htb lets through, IP headers and all; the probe measures
goodput (the body), about 5 % less for the same rate. A scenario whose self-check fails is
a broken lab, not a probe error: it is reported and left out, and the exit status is 1.

Run from the repository root, as root:  python bench/throughput.py [--scenario NAME]... [--keep]
Traffic stays inside the lab's network namespaces (198.18.0.0/15).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lab import bench, topology
from tests.lab.runner import ScenarioResult, run_scenario, show
from tests.lab.scenario import Scenario, load_all

GOAL = 0.15  # relative error of the measured rate


def _lab_rate(result: ScenarioResult) -> float | None:
    """What the scenario's self-check measured of the shaper (its first bounded rate check)."""
    for check in result.checks:
        bounded = str(check["expect"]).startswith(("between", "below"))
        if check["kind"] == "rate" and bounded and str(check["got"]).startswith("kbps "):
            return float(str(check["got"]).split()[1])
    return None


def _facts(workdir: Path, measurement_id: int | None) -> dict[str, Any]:
    """The timed test's part of the verdict's evidence (per-trial rates, a change point)."""
    if measurement_id is None:
        return {}
    verdict = show(workdir, measurement_id).get("evidence", {}).get("verdict_evidence", {})
    if verdict.get("throughput"):
        return dict(verdict["throughput"])
    # A replay's: the direction it found slowed (downloads first, as the verdict reads them).
    replay = verdict.get("replay") or {}
    for direction in ("down", "up"):
        facts = replay.get(direction) or {}
        if (facts.get("vs_innocuous") or {}).get("slower"):
            target = facts.get("target") or {}
            return {"target": target, "change_at_bytes": _first(target.get("change_at_bytes"))}
    return {}


def _first(values: list[int | None] | None) -> int | None:
    """The first change point of a replay's trials, if any found one."""
    return next((v for v in values or () if v), None)


def _measure(lab: topology.Lab, scenario: Scenario, workdir: Path) -> dict[str, Any]:
    assert scenario.shaper is not None
    result = run_scenario(lab, scenario, workdir)
    line: dict[str, Any] = {"scenario": scenario, "result": result}
    row = result.row(scenario.shaper.input)
    if not result.lab_ok or row is None:
        return line
    facts = _facts(workdir, row.measurement_id)
    target = facts.get("target", {})
    line.update(
        row=row,
        lab_kbps=_lab_rate(result),
        trials=target.get("kbps") or [],
        change=facts.get("change_at_bytes"),
    )
    if row.throughput_kbps is not None:
        line["error"] = row.throughput_kbps / scenario.shaper.kbps - 1
    return line


def _kbps(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _table(lines: list[dict[str, Any]]) -> str:
    header = ("scenario", "configured", "lab check", "probe", "error", "verdict", "trials (kbit/s)")
    rows = [header]
    for line in lines:
        scenario: Scenario = line["scenario"]
        assert scenario.shaper is not None
        row = line.get("row")
        configured = f"{scenario.shaper.kbps:.0f}"
        if scenario.shaper.after_bytes:
            configured += f" after {scenario.shaper.after_bytes} B"
        verdict = "-"
        if row is not None:
            why = row.rule if row.verdict == "accessible" else row.detail  # not_slower, say
            verdict = f"{row.verdict} ({why})"
            verdict += (
                ""
                if row.layer_ok and row.rule_ok
                else f" WRONG, expected {row.expected.describe()}"
            )
        error = line.get("error")
        trials = "/".join(f"{k:.1f}" for k in line.get("trials", []))
        if line.get("change"):
            trials += f", fell after {line['change']} B"
        rows.append((
            scenario.name, configured, _kbps(line.get("lab_kbps")),
            _kbps(row.throughput_kbps if row else None),
            "-" if error is None else f"{error:+.1%}", verdict, trials or "-",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _summary(lines: list[dict[str, Any]]) -> str:
    measured = [ln for ln in lines if ln.get("error") is not None]
    within = [ln for ln in measured if abs(ln["error"]) <= GOAL]
    right = [ln for ln in lines if ln.get("row") and ln["row"].layer_ok and ln["row"].rule_ok]
    text = (
        f"throughput: {len(within)}/{len(lines)} shaped scenarios within {GOAL:.0%} of the "
        f"configured rate"
    )
    if measured:
        worst = max(measured, key=lambda ln: abs(ln["error"]))
        text += f" (largest error {worst['error']:+.1%}, {worst['scenario'].name})"
    return text + f"; verdicts {len(right)}/{len(lines)} as expected"


def main() -> int:
    args = bench.parser(__doc__.split("\n")[0]).parse_args()
    scenarios = [
        s for s in load_all() if s.shaper and (not args.scenario or s.name in args.scenario)
    ]
    started = time.monotonic()
    lines = bench.run_all("throughput", args, scenarios, _measure, lambda ln: ln["result"])
    if lines is None:
        return 2
    broken = [ln for ln in lines if not ln["result"].lab_ok]
    scored = [ln for ln in lines if ln["result"].lab_ok]
    print(_table(scored))
    print()
    print(f"{len(scored)} scenarios in {time.monotonic() - started:.0f} s")
    print(_summary(scored))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
