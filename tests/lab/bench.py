"""What the lab benchmarks share: their flags, the lab's bring-up or reuse, the scenario loop."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from tests.lab import topology
from tests.lab.runner import ScenarioResult
from tests.lab.scenario import Scenario

T = TypeVar("T")


def parser(description: str) -> argparse.ArgumentParser:
    """--scenario, --keep and --fresh, as every lab benchmark takes them."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--scenario", action="append", metavar="NAME", help="only these")
    p.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    p.add_argument("--fresh", action="store_true", help="rebuild even if a lab runs")
    return p


def run_all(
    prog: str,
    args: argparse.Namespace,
    scenarios: Sequence[Scenario],
    measure: Callable[[topology.Lab, Scenario, Path], T],
    result_of: Callable[[T], ScenarioResult],
) -> list[T] | None:
    """Run ``measure`` for each scenario in a lab (reused when healthy); None without one.

    Progress goes to stderr; a scenario whose self-check failed is reported as a broken lab.
    """
    missing = topology.missing_prerequisites()
    if missing:
        print(f"{prog}: the lab needs {', '.join(missing)}", file=sys.stderr)
        return None
    lab = None if args.fresh else topology.attach()
    built = lab is None
    lab = lab or topology.up()
    print(
        f"lab {'built' if built else 'reused'}; control helper {'on' if lab.helper else 'off'}",
        file=sys.stderr,
    )
    items: list[T] = []
    try:
        with tempfile.TemporaryDirectory(prefix="probe-lab-") as tmp:
            for scenario in scenarios:
                item = measure(lab, scenario, Path(tmp) / scenario.name)
                items.append(item)
                result = result_of(item)
                state = "lab ok" if result.lab_ok else "LAB BROKEN"
                print(f"  {scenario.name:<24} {state:<10} {result.seconds:5.1f} s", file=sys.stderr)
    finally:
        if built and not args.keep:
            topology.down()
    for item in items:
        result = result_of(item)
        for check in result.failed_checks():
            print(
                f"LAB BROKEN in {result.scenario.name}: {check['kind']} expected "
                f"{check['expect']!r}, got {check['got']!r}"
            )
    return items
