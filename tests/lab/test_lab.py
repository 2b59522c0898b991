"""Every lab scenario through the real probe: the censor checked first, then the verdicts.

One test per scenario file. A failed self-check means the lab does not do what the scenario
claims: that fails the test as a broken lab, never as a probe error. Then each input's
verdict and layer (and the rule that decided, where the scenario names one) must be what a
correct probe says. Two exceptions turn a mismatch into an xfail, each with its reason: an
expectation that ``needs`` the control helper when this probe has none, and a
``known_issue`` (a reported probe bug) where only the layer differs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.lab import plan, processes, topology
from tests.lab.runner import Row, run_scenario
from tests.lab.scenario import Scenario, load_all

pytestmark = pytest.mark.lab

SCENARIOS = load_all()


def _explain(rows: list[Row]) -> str:
    def rule(r: Row) -> str:
        return f" by rule {r.expected.rule}" if r.expected.rule else ""

    return "\n".join(
        f"  {r.input}: expected {r.expected.describe()}{rule(r)}, got {r.got()} by rule {r.rule}"
        for r in rows
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(lab: topology.Lab, scenario: Scenario, tmp_path: Path) -> None:
    result = run_scenario(lab, scenario, tmp_path)
    if not result.lab_ok:
        broken = "\n".join(
            f"  {c['kind']} from {c['from']}: expected {c['expect']!r}, got {c['got']!r}"
            for c in result.failed_checks()
        )
        pytest.fail(f"the lab is broken (not the probe): {scenario.title}\n{broken}")
    assert result.probe_exit == 0, result.probe_output
    wrong = result.mismatches()
    helper_gap = [r for r in wrong if r.expected.needs == "helper" and not lab.helper]
    known = [r for r in wrong if r.expected.known_issue and r.verdict_ok]
    unexplained = [r for r in wrong if r not in helper_gap and r not in known]
    assert not unexplained, f"{scenario.title}:\n{_explain(unexplained)}"
    if helper_gap:
        pytest.xfail(f"needs the control helper:\n{_explain(helper_gap)}")
    if known:
        issues = "; ".join(sorted({str(r.expected.known_issue) for r in known}))
        pytest.xfail(f"known probe issue ({issues}):\n{_explain(known)}")


def test_nothing_of_the_lab_in_the_root_namespace(lab: topology.Lab) -> None:
    """The lab's interfaces, routes and rules exist only inside its namespaces."""
    links = processes.run(["ip", "-o", "link", "show"]).stdout
    assert plan.PREFIX not in links
    routes = processes.run(["ip", "route", "show", "table", "all"]).stdout
    assert "198.18." not in routes and "198.19." not in routes
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=20)
    assert "PL-" not in rules.stdout
    assert set(topology.lab_namespaces()) == set(plan.NAMESPACES)
