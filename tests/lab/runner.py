"""One scenario, end to end: censor on, censor checked, the real probe run, its export scored.

    result = run_scenario(lab, scenario, workdir)
    result.lab_ok       # every self-check passed (else the probe was not run at all)
    result.rows         # per input: expected vs what `probe export` says

The probe runs as a user runs it: ``ip netns exec pl-van probe run --config ...`` with a
config pointing it at the lab (the ISP resolver, the lab root, the lab's DoH, references and
control helper), then ``probe export --format jsonl``.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab import plan, policy, squid
from tests.lab.processes import LabError, netns_exec, probe_command, python_env
from tests.lab.scenario import TARGETS, VERDICTS, Expectation, Scenario
from tests.lab.topology import Lab, selfcheck

# Short timeouts keep the whole suite within minutes; the lab's links are fast and local.
LIMITS = {
    "retries": 1,
    "retry_delay": 0.3,
    "dns_timeout": 2.0,
    "connect_timeout": 2.0,
    "http_timeout": 4.0,
    "target_timeout": 30.0,
    "sweep_timeout": 120.0,
}
# Rule 7's budgets in the lab (they matter only for target lists with a throughput_url).
# Each of a test's 9 transfers (3 rounds of target, innocuous SNI, reference) gets 1/9 of
# the test's bytes and seconds: 128 KiB and 14 s. The bytes end every transfer, so nothing
# of it is left in flight (or queued in a throttle) to slow the next one; the seconds are
# only a bound, with room for the 128 kbit/s policer (128 KiB there take about 9 s: the
# handshake and the first 16 KiB TLS record, which carries the headers, then 7 records at
# ~15 KiB/s). Fewer bytes would make that first record, which the probe counts as arriving
# at once, a larger share of the rate: at 128 KiB it adds about 1/7, less the ~5 % of
# TCP/IP and TLS overhead that the goodput never sees.
THROUGHPUT: dict[str, Any] = {
    "enabled": True,
    "max_bytes_per_test": 9 * 128 * 1024,
    "max_seconds_per_test": 9 * 14.0,
    "max_bytes_per_sweep": 64 << 20,
    "max_bytes_per_day": 1 << 30,
    "trials": 3,
    "sample_interval": 0.1,
    "reference": [plan.REFERENCES[0].rstrip("/") + "/big"],  # its /big, like the targets'
}


@dataclass(frozen=True, slots=True)
class Row:
    """One input of one scenario: what was expected, what the probe said."""

    scenario: str
    service: str
    input: str
    expected: Expectation
    verdict: str  # "missing" when the export has no row for the input
    layer: str | None
    detail: str | None
    rule: str | None = None
    throughput_kbps: float | None = None
    baseline_kbps: float | None = None
    measurement_id: int | None = None
    helper: bool = True  # the probe ran with the control helper

    @property
    def helper_gap(self) -> bool:
        """The expectation needs the helper and the probe ran without one."""
        return self.expected.needs == "helper" and not self.helper

    @property
    def expected_now(self) -> Expectation:
        """What this run should say: without the helper, what the expectation says a probe
        without one says (inconclusive unless it says accessible), at any layer or detail."""
        if self.helper_gap:
            return Expectation(self.expected.without_helper or "inconclusive")
        return self.expected

    @property
    def verdict_ok(self) -> bool:
        return self.verdict == self.expected_now.verdict

    @property
    def layer_ok(self) -> bool:
        # Without the helper, inconclusive with any detail is what a correct probe says.
        return self.verdict_ok and (self.helper_gap or self.layer == self.expected.layer)

    @property
    def rule_ok(self) -> bool:
        """The rule the expectation names, if it names one, is the one that decided."""
        return self.helper_gap or self.expected.rule is None or self.rule == self.expected.rule

    @property
    def false_alarm(self) -> bool:
        """Blocked or throttled where nothing should have been found (never where the
        censor does block and only the missing helper could have shown it)."""
        return (
            not self.helper_gap
            and self.expected.verdict in ("accessible", "inconclusive")
            and self.verdict in ("blocked", "throttled")
        )

    def got(self) -> str:
        """ "blocked/tls (tls.reset)"."""
        return Expectation(self.verdict, self.layer, self.detail).describe()


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """What one scenario showed."""

    scenario: Scenario
    checks: tuple[dict[str, Any], ...]
    rows: tuple[Row, ...] = ()
    probe_exit: int | None = None
    probe_output: str = ""
    seconds: float = 0.0

    @property
    def lab_ok(self) -> bool:
        """The censor did what the scenario claims (every self-check passed)."""
        return all(c["ok"] for c in self.checks)

    def failed_checks(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c["ok"]]

    def mismatches(self) -> list[Row]:
        """Rows whose verdict, layer or (when expected) rule differs from the expectation."""
        return [r for r in self.rows if not (r.layer_ok and r.rule_ok)]

    def row(self, value: str) -> Row | None:
        """The row of one input."""
        return next((r for r in self.rows if r.input == value), None)


def _toml(value: Any) -> str:
    return json.dumps(value)  # booleans, numbers, strings and lists of them: TOML too


def write_config(
    path: Path, lab: Lab, db: Path, limits: dict[str, Any] | None = None, helper: bool = True
) -> Path:
    """The probe's config for the lab (TOML), with the helper when the lab runs one (and
    ``helper`` does not leave it out)."""
    limits = {**LIMITS, **(limits or {})}
    refs = ", ".join(f'"{u}"' for u in plan.REFERENCES)
    lines = [
        "[vantage]",
        'name = "lab-vantage"',
        'network_type = "lab"',
        'country = "KZ"',
        "asn = 64500",
        "consent = true",  # the lab accepts what a sweep does (see tests/conftest.py)
        "[network]",
        f'resolver = "{plan.ISP_RESOLVER}"',
        f'ca_bundle = "{lab.ca_bundle}"',
        f'routable = ["{plan.ROUTABLE}"]',
        "[control]",
        f'doh = ["{plan.DOH_URL}"]',
        f"reference = [{refs}]",
        *([f'helper = "{plan.HELPER_URL}"'] if lab.helper and helper else []),
        "[storage]",
        f'db = "{db}"',
        "[limits]",
        *(f"{k} = {_toml(v)}" for k, v in limits.items()),
        "[throughput]",
        *(f"{k} = {_toml(v)}" for k, v in THROUGHPUT.items()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def apply(lab: Lab, scenario: Scenario) -> None:
    """Turn the scenario's data into policies, iptables rules, qdiscs and link state."""
    policy.write(lab.paths.isp_policy, scenario.isp_policy)
    policy.write(lab.paths.net_policy, scenario.net_policy)
    for rule in scenario.rules:
        lab.iptables(rule.ns, rule.table, "-A", rule.chain, *rule.args)
    for ns, command in scenario.tc:
        lab.tc(ns, command)
    if scenario.uplink_down:
        lab.set_uplink(False)
    if scenario.squid_deny:
        squid.start(lab.paths, lab.state, scenario.squid_deny)


def run_checks(lab: Lab, scenario: Scenario) -> tuple[dict[str, Any], ...]:
    """The scenario's self-checks, from the namespace each names."""
    results: list[dict[str, Any]] = []
    for role in ("vantage", "control"):
        mine = [c for c in scenario.checks if c["from"] == role]
        if mine:
            results += selfcheck(lab, role, mine)
    return tuple(results)


def _probe(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            netns_exec(plan.VANTAGE, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=python_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(argv[:2])} did not finish within {timeout:.0f} s") from None


def run_probe(
    lab: Lab,
    workdir: Path,
    limits: dict[str, Any] | None = None,
    targets: tuple[Path, ...] = (TARGETS,),
    helper: bool = True,
) -> tuple[int, str, list[dict[str, Any]]]:
    """``probe run`` then ``probe export`` in the vantage: exit code, output, exported rows."""
    db = workdir / "results.sqlite"
    for stale in workdir.glob("results.sqlite*"):
        stale.unlink()
    config = write_config(workdir / "probe.toml", lab, db, limits, helper)
    probe = probe_command()
    lists = [arg for t in targets for arg in ("--targets", str(t))]
    timeout = float({**LIMITS, **(limits or {})}["sweep_timeout"]) + 60.0
    ran = _probe([*probe, "run", "--config", str(config), *lists, "--no-progress"], timeout)
    exported = _probe([*probe, "export", "--config", str(config), "--format", "jsonl"], 60.0)
    if exported.returncode != 0:
        raise LabError(f"probe export failed: {exported.stderr.strip()}")
    rows = [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]
    return ran.returncode, ran.stdout + ran.stderr, rows


def show(workdir: Path, measurement_id: int) -> dict[str, Any]:
    """``probe show ID --json`` of a scenario's last run (its verdict's evidence and more)."""
    config = workdir / "probe.toml"
    shown = _probe([*probe_command(), "show", str(measurement_id), "--config", str(config),
                    "--json"], 60.0)  # fmt: skip
    if shown.returncode != 0:
        raise LabError(f"probe show failed: {shown.stderr.strip()}")
    return dict(json.loads(shown.stdout))


def run_scenario(
    lab: Lab, scenario: Scenario, workdir: Path, helper: bool = True
) -> ScenarioResult:
    """Apply, check, measure, score; the lab is reset before and after. ``helper=False``
    runs the probe without the control helper even where the lab has one."""
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    lab.reset()
    try:
        apply(lab, scenario)
        checks = run_checks(lab, scenario)
        if not all(c["ok"] for c in checks):
            return ScenarioResult(scenario, checks, seconds=time.monotonic() - started)
        code, output, exported = run_probe(
            lab, workdir, scenario.probe_limits, scenario.targets, helper
        )
    finally:
        lab.reset()
    by_input = {r["input"]: r for r in exported}
    rows = []
    for value, expected in scenario.expect.items():
        got = by_input.get(value, {})
        rows.append(
            Row(
                scenario.name,
                str(got.get("service", "?")),
                value,
                expected,
                str(got.get("verdict", "missing")),
                got.get("layer"),
                got.get("detail"),
                got.get("rule"),
                got.get("throughput_kbps"),
                got.get("baseline_kbps"),
                got.get("measurement_id"),
                lab.helper and helper,
            )
        )
    return ScenarioResult(scenario, checks, tuple(rows), code, output, time.monotonic() - started)


@dataclass
class Score:
    """Accuracy over many scenarios: the counts of the benchmark's last line."""

    verdicts: int = 0
    layers: int = 0
    total: int = 0
    false_alarms: int = 0
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    helper: bool = False  # every row came from a probe with the control helper

    @classmethod
    def of(cls, rows: Iterable[Row]) -> Score:
        score = cls()
        helped = []
        for row in rows:
            score.total += 1
            score.verdicts += row.verdict_ok
            score.layers += row.layer_ok
            score.false_alarms += row.false_alarm
            score.confusion[(row.expected_now.verdict, row.verdict)] += 1
            helped.append(row.helper)
        score.helper = bool(helped) and all(helped)
        return score

    def line(self) -> str:
        """The benchmark's last line: ``accuracy: verdicts N/M, layers N/M, false-alarms K``
        without the helper, ``accuracy (with the control helper): verdicts ...`` with it."""
        mode = " (with the control helper)" if self.helper else ""
        return (
            f"accuracy{mode}: verdicts {self.verdicts}/{self.total}, "
            f"layers {self.layers}/{self.total}, false-alarms {self.false_alarms}"
        )

    def matrix(self) -> str:
        """The confusion matrix, expected (rows) x got (columns)."""
        got_labels = [*VERDICTS, *sorted({g for _, g in self.confusion} - set(VERDICTS))]
        width = max(len(v) for v in (*VERDICTS, *got_labels, "expected \\ got"))
        lines = ["expected \\ got".ljust(width) + "".join(g.rjust(width + 2) for g in got_labels)]
        for expected in VERDICTS:
            counts = (str(self.confusion[(expected, g)]).rjust(width + 2) for g in got_labels)
            lines.append(expected.ljust(width) + "".join(counts))
        return "\n".join(lines)
