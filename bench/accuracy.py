"""Accuracy benchmark: every lab scenario through the real ``probe run``, scored.

Brings the censorship lab up (or reuses one already running and healthy), runs every
scenario of tests/lab/scenarios (each: censor on, censor self-checked, ``probe run`` in the
vantage namespace, ``probe export``), then prints:

    a per-target table    scenario, input, expected, got (verdict/layer (detail)), a mark
                          (ok, LAYER, WRONG, FALSE ALARM; RULE when the expectation names
                          the rule that must decide, a throughput test's say, and another did)
    a confusion matrix    expected verdict x verdict the probe gave
    the last line         accuracy: verdicts N/M, layers N/M, false-alarms K

(false alarms: blocked or throttled where the expectation is accessible or inconclusive).
A scenario whose self-check fails is a broken lab, not a probe error: it is reported and
left out of the score, and the exit status is 1.

Run from the repository root, as root:  python bench/accuracy.py [--scenario NAME]... [--keep]
Traffic stays inside the lab's network namespaces (198.18.0.0/15).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lab import topology
from tests.lab.runner import ScenarioResult, Score, run_scenario
from tests.lab.scenario import load_all


def _table(results: list[ScenarioResult]) -> str:
    header = ("scenario", "input", "expected", "got", "")
    rows = [header]
    for result in results:
        for row in result.rows:
            mark = "ok" if row.layer_ok else ("LAYER" if row.verdict_ok else "WRONG")
            if row.layer_ok and not row.rule_ok:
                mark = f"RULE {row.rule}"  # right verdict, but not decided as expected
            if row.false_alarm:
                mark = "FALSE ALARM"
            rows.append((row.scenario, row.input, row.expected.describe(), row.got(), mark))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", action="append", metavar="NAME", help="only these")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument("--fresh", action="store_true", help="rebuild even if a lab runs")
    args = parser.parse_args()
    missing = topology.missing_prerequisites()
    if missing:
        print(f"accuracy: the lab needs {', '.join(missing)}", file=sys.stderr)
        return 2
    scenarios = [s for s in load_all() if not args.scenario or s.name in args.scenario]
    started = time.monotonic()
    lab = None if args.fresh else topology.attach()
    built = lab is None
    lab = lab or topology.up()
    print(
        f"lab {'built' if built else 'reused'}; control helper {'on' if lab.helper else 'off'}",
        file=sys.stderr,
    )
    results: list[ScenarioResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="probe-lab-") as tmp:
            for scenario in scenarios:
                result = run_scenario(lab, scenario, Path(tmp) / scenario.name)
                results.append(result)
                state = "lab ok" if result.lab_ok else "LAB BROKEN"
                print(f"  {scenario.name:<24} {state:<10} {result.seconds:5.1f} s", file=sys.stderr)
    finally:
        if built and not args.keep:
            topology.down()
    broken = [r for r in results if not r.lab_ok]
    for result in broken:
        for check in result.failed_checks():
            print(
                f"LAB BROKEN in {result.scenario.name}: {check['kind']} expected "
                f"{check['expect']!r}, got {check['got']!r}"
            )
    scored = [r for r in results if r.lab_ok]
    score = Score.of(row for r in scored for row in r.rows)
    print(_table(scored))
    print()
    print(score.matrix())
    print()
    print(f"{len(scored)} scenarios in {time.monotonic() - started:.0f} s")
    print(score.line())
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
