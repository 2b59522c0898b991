"""Scenarios as data: one TOML file per censorship technique or look-alike, in scenarios/.

A scenario names what the censor (or the network, or the sites) does, how to check that it
really does it, and what a correct probe should say about every input of the lab's target
list (``targets.toml``)::

    title = "RST after ClientHello (SNI)"      # the row of LAB.md it reproduces
    kind = "technique"                          # or "look-alike"

    [[iptables]]                                # appended to a lab chain (plan.CHAINS)
    ns = "isp"                                  # isp (default) | vantage | net
    table = "filter"                            # filter (default) | nat | mangle
    chain = "PL-CENSOR"                         # default: the table's first lab chain there
    rule = "-p tcp --dport 443 -m string --algo bm --string www.facebook.com -j DROP"

    [[tc]]                                      # a tc command in a namespace
    ns = "isp"
    command = "qdisc replace dev pl-isp-van root handle 1: htb default 10"

    [resolver]                                  # the ISP resolver, per name (tests.lab.isp)
    "www.facebook.com" = { action = "nxdomain" }
    [inject]                                    # the on-path DNS injector
    names = ["www.instagram.com"]
    forged = ["198.19.66.66"]
    [http_proxy]                                # the transparent HTTP proxy, per Host
    "www.facebook.com" = { action = "redirect", location = "http://warning.rt.ru/" }
    [tls_proxy]                                 # the intercepting TLS proxy
    issuer = "Information Security Certification Authority"
    [server]                                    # what the sites do for everyone
    status = { "www.instagram.com" = 403 }
    [link]
    uplink = "down"                             # the vantage's line is cut
    [probe]                                     # the probe's [limits], if not the runner's
    retries = 2

    [[check]]                                   # tests.lab.selfcheck, from vantage or control
    from = "vantage"
    kind = "tls"
    ip = "{www.facebook.com}"
    sni = "www.facebook.com"
    expect = "reset"

    [expect]                                    # per input; the rest: `default` (accessible)
    "https://www.facebook.com/" = { verdict = "blocked", layer = "tls", detail = "tls.reset" }

``{name}`` in a rule, a tc command or a check's ``ip`` stands for that name's address in the
lab's zone. An expectation may say ``needs = "helper"`` (only a probe with the control
helper can reach it) or carry a ``known_issue``: a reported probe bug that makes the probe
get this input's layer wrong (the verdict must still be right).
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.config import KEYS
from targets.load import load_many
from tests.lab import plan

SCENARIO_DIR = Path(__file__).parent / "scenarios"
TARGETS = Path(__file__).parent / "targets.toml"
VERDICTS = ("accessible", "blocked", "throttled", "inconclusive")
LAYERS = ("dns", "tcp", "tls", "http")
_KEYS = {
    "title",
    "kind",
    "description",
    "iptables",
    "tc",
    "resolver",
    "inject",
    "http_proxy",
    "tls_proxy",
    "server",
    "link",
    "check",
    "expect",
    "probe",
}
# [probe]: the probe's [limits] a scenario may override (the runner's LIMITS otherwise).
_LIMITS = {k.name for k in KEYS if k.section == "limits"}
_PLACEHOLDER = re.compile(r"\{([a-z0-9.-]+)\}")


class ScenarioError(ValueError):
    """A scenario file that cannot be used, naming the file and the field."""


def substitute(text: str) -> str:
    """``{name}`` replaced by the name's address in the lab zone."""

    def address(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in plan.ZONE:
            raise ValueError(f"{{{name}}}: not a name of the lab zone")
        return plan.ZONE[name]

    return _PLACEHOLDER.sub(address, text)


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a correct probe says about one input."""

    verdict: str
    layer: str | None = None
    detail: str | None = None
    needs: str | None = None  # "helper": only with the control helper
    known_issue: str | None = None  # a reported probe bug that gets this input's layer wrong

    def describe(self) -> str:
        """ "blocked/tls (tls.reset)"."""
        text = self.verdict + (f"/{self.layer}" if self.layer else "")
        return text + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True, slots=True)
class Rule:
    """One iptables rule appended to a lab chain."""

    ns: str
    table: str
    chain: str
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A technique or look-alike, as the runner applies and scores it."""

    name: str
    title: str
    kind: str
    rules: tuple[Rule, ...]
    tc: tuple[tuple[str, str], ...]  # (namespace, command)
    isp_policy: dict[str, Any]
    net_policy: dict[str, Any]
    uplink_down: bool
    checks: tuple[dict[str, Any], ...]
    expect: dict[str, Expectation]  # every input of the target list
    description: str = ""
    probe_limits: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_helper(self) -> bool:
        """Whether some expectation needs the control helper."""
        return any(e.needs == "helper" for e in self.expect.values())


def target_inputs() -> list[str]:
    """Every input of the lab's target list, in order."""
    return [job.value for job in load_many([str(TARGETS)]).inputs()]


def _expectation(where: str, raw: Any) -> Expectation:
    fields = {"verdict", "layer", "detail", "needs", "known_issue"}
    if not isinstance(raw, dict) or set(raw) - fields:
        raise ScenarioError(f"{where}: expected {{{', '.join(sorted(fields))}}}")
    e = Expectation(
        raw.get("verdict", ""),
        raw.get("layer"),
        raw.get("detail"),
        raw.get("needs"),
        raw.get("known_issue"),
    )
    if e.verdict not in VERDICTS:
        raise ScenarioError(f"{where}: verdict {e.verdict!r} is not one of {VERDICTS}")
    if (e.verdict == "blocked") != (e.layer is not None) or e.layer not in (None, *LAYERS):
        raise ScenarioError(f"{where}: a blocked input needs a layer {LAYERS}, others none")
    if e.needs not in (None, "helper"):
        raise ScenarioError(f'{where}: needs must be "helper"')
    return e


def _rule(where: str, raw: Any) -> Rule:
    ns = plan.NS_BY_ROLE.get(raw.get("ns", "isp"))
    table = raw.get("table", "filter")
    chains = [c for t, c, _ in plan.CHAINS.get(ns or "", ()) if t == table]
    chain = raw.get("chain", chains[0] if chains else None)
    if ns is None or chain not in chains:
        raise ScenarioError(f"{where}: no lab chain {chain!r} in table {table!r} of {ns!r}")
    return Rule(ns, table, chain, tuple(shlex.split(substitute(raw["rule"]))))


def load(path: Path) -> Scenario:
    """Read and validate one scenario file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    unknown = set(data) - _KEYS
    if unknown:
        raise ScenarioError(f"{path}: unknown keys {sorted(unknown)}")
    if data.get("kind") not in ("technique", "look-alike"):
        raise ScenarioError(f'{path}: kind must be "technique" or "look-alike"')
    try:
        rules = tuple(
            _rule(f"{path}: iptables[{i}]", r) for i, r in enumerate(data.get("iptables", []))
        )
        tc = tuple(
            (plan.NS_BY_ROLE[t.get("ns", "isp")], substitute(t["command"]))
            for t in data.get("tc", [])
        )
        checks = []
        for c in data.get("check", []):
            c = {**c, "from": c.get("from", "vantage")}
            if "ip" in c:
                c["ip"] = substitute(c["ip"])
            if c["from"] not in ("vantage", "control") or "kind" not in c or "expect" not in c:
                raise ScenarioError(f"{path}: check {c}: needs kind, expect, from vantage|control")
            checks.append(c)
    except (KeyError, ValueError) as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(f"{path}: {exc}") from None
    inputs = target_inputs()
    raw_expect = dict(data.get("expect", {}))
    default = _expectation(
        f"{path}: expect.default", raw_expect.pop("default", {"verdict": "accessible"})
    )
    strays = set(raw_expect) - set(inputs)
    if strays:
        raise ScenarioError(f"{path}: expect: {sorted(strays)} are not inputs of {TARGETS.name}")
    expect = {
        i: _expectation(f"{path}: expect.{i}", raw_expect[i]) if i in raw_expect else default
        for i in inputs
    }
    isp_policy: dict[str, Any] = {
        k: data[k] for k in ("resolver", "inject", "http_proxy", "tls_proxy") if k in data
    }
    limits = dict(data.get("probe", {}))
    if set(limits) - _LIMITS:
        raise ScenarioError(f"{path}: probe: {sorted(set(limits) - _LIMITS)} are not [limits] keys")
    return Scenario(
        name=path.stem,
        title=str(data.get("title", path.stem)),
        kind=data["kind"],
        rules=rules,
        tc=tc,
        isp_policy=isp_policy,
        net_policy=dict(data.get("server", {})),
        uplink_down=data.get("link", {}).get("uplink") == "down",
        checks=tuple(checks),
        expect=expect,
        description=str(data.get("description", "")),
        probe_limits=limits,
    )


def load_all(directory: Path = SCENARIO_DIR) -> list[Scenario]:
    """Every scenario, techniques first, each group by name."""
    found = [load(p) for p in sorted(directory.glob("*.toml"))]
    return sorted(found, key=lambda s: (s.kind != "technique", s.name))
