"""Accuracy benchmark: every lab scenario through the real ``probe run``, scored.

Brings the censorship lab up (or reuses one already running and healthy), runs every
scenario of tests/lab/scenarios (each: censor on, censor self-checked, ``probe run`` in the
vantage namespace, ``probe export``), then prints:

    a per-target table    scenario, input, expected, got (verdict/layer (detail)), a mark
                          (ok, LAYER, WRONG, FALSE ALARM; RULE when the expectation names
                          the rule that must decide, a throughput test's say, and another did)
    a confusion matrix    expected verdict x verdict the probe gave
    the last line         accuracy (with the control helper): verdicts N/M, layers N/M,
                          false-alarms K; without the helper (--no-helper, or a lab that
                          has none): accuracy: verdicts N/M, layers N/M, false-alarms K

(false alarms: blocked or throttled where the expectation is accessible or inconclusive).
A scenario whose self-check fails is a broken lab, not a probe error: it is reported and
left out of the score, and the exit status is 1.

The probe runs with the lab's control helper when the lab has one. ``--no-helper`` leaves it
out of the probe's config (the lab's helper keeps running, unasked), as
a volunteer without a helper runs the probe. An expectation marked ``needs = "helper"`` is
then scored as "expected inconclusive (any detail), and never a false alarm": only the
helper could show that blocking, so a correct probe without it says it cannot tell, and the
censor does block there, so a "blocked" is no false alarm (it is still a wrong verdict).
Where the scenario says ``without_helper = "accessible"`` (a throttle only the helper's
transfers show, a page swapped on plain HTTP with no fingerprint), "accessible" is expected
instead: nothing the probe has alone shows the interference, and it claims none.
Every other expectation is scored as with the helper: what a fingerprint, a DoH answer or an
innocuous SNI shows needs no helper.

Run from the repository root, as root:
    python bench/accuracy.py [--scenario NAME]... [--keep] [--fresh] [--no-helper]
Traffic stays inside the lab's network namespaces (198.18.0.0/15).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lab import bench
from tests.lab.runner import ScenarioResult, Score, run_scenario
from tests.lab.scenario import Scenario, load_all
from tests.lab.topology import Lab


def _table(results: list[ScenarioResult]) -> str:
    header = ("scenario", "input", "expected", "got", "")
    rows = [header]
    for result in results:
        for row in result.rows:
            mark = "ok" if row.layer_ok else ("LAYER" if row.verdict_ok else "WRONG")
            expected = row.expected_now.describe() + (" (no helper)" if row.helper_gap else "")
            if row.layer_ok and not row.rule_ok:
                mark = f"RULE {row.rule}"  # right verdict, but not decided as expected
            if row.false_alarm:
                mark = "FALSE ALARM"
            rows.append((row.scenario, row.input, expected, row.got(), mark))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def main() -> int:
    parser = bench.parser(__doc__.split("\n")[0])
    parser.add_argument(
        "--no-helper", action="store_true", help="run the probe without the control helper"
    )
    args = parser.parse_args()
    scenarios = [s for s in load_all() if not args.scenario or s.name in args.scenario]
    unknown = set(args.scenario or ()) - {s.name for s in scenarios}
    if unknown:
        print(f"accuracy: no scenario {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    started = time.monotonic()
    helper = not args.no_helper

    def measure(lab: Lab, scenario: Scenario, workdir: Path) -> ScenarioResult:
        return run_scenario(lab, scenario, workdir, helper)

    results = bench.run_all("accuracy", args, scenarios, measure, lambda r: r)
    if results is None:
        return 2
    broken = [r for r in results if not r.lab_ok]
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
