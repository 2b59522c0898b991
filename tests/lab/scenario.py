"""Scenarios as data: one TOML file per censorship technique or look-alike, in scenarios/.

A scenario names what the censor (or the network, or the sites) does, how to check that it
really does it, and what a correct probe should say about every input of the lab's target
list (``targets.toml``)::

    title = "RST after ClientHello (SNI)"      # the row of LAB.md it reproduces
    kind = "technique"                          # or "look-alike"
    targets = ["targets.toml"]                  # the target lists the probe runs (the default)

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
    [squid]                                     # Debian's squid (tests.lab.squid): its
    deny = ["www.facebook.com"]                 # stock page for these hosts, the rest relayed
    [tls_proxy]                                 # the intercepting TLS proxy
    issuer = "Information Security Certification Authority"
    intermediate = "Security Certificate"   # optional: the leaf issued by an intermediate
    [server]                                    # what the sites do for everyone
    status = { "www.instagram.com" = 403 }
    broken = { "/garbage" = "garbage" }         # a path's raw bad answer (tests.lab.internet)
    slow = { "/slow" = 5.0 }                    # seconds before a path's answer starts
    redirect = { "http://t.co/fb" = "https://www.facebook.com/" }   # a URL's 301 (a shortener)
    [link]
    uplink = "down"                             # the vantage's line is cut
    [probe]                                     # the probe's [limits], if not the runner's
    retries = 2
    [shaper]                                    # a throttle: the input it slows, at what rate
    input = "https://www.facebook.com/big"      # (bench/throughput.py compares the probe's
    kbps = 128                                  # measured rate with it)
    after_bytes = 65536                         # only past the first N bytes (optional)

    [[check]]                                   # tests.lab.selfcheck, from vantage or control
    from = "vantage"
    kind = "tls"
    ip = "{www.facebook.com}"
    sni = "www.facebook.com"
    expect = "reset"

    [expect]                                    # per input; the rest: `default` (accessible)
    "https://www.facebook.com/" = { verdict = "blocked", layer = "tls", detail = "tls.reset" }
    # (with targets = ["targets-throughput.toml"]: the test ran, and found no throttle)
    # "https://twitter.com/big" = { verdict = "accessible", rule = "throughput.not_slower" }

``{name}`` in a rule, a tc command or a check's ``ip`` stands for that name's address in the
lab's zone. The target lists are files next to this module: ``targets.toml`` (every
service's pages and endpoints), ``targets-throughput.toml`` (services whose
``throughput_url`` the probe times; only the scenarios about throughput run it, since its
transfers take seconds each) and ``targets-paths.toml`` (one site's front pages and the
paths that scenarios break or slow); ``targets = ["bundled"]`` is the project's own list,
targets/default.toml, every name of which the lab serves (plan.BUNDLED_ZONE), run from a
copy whose endpoints' public addresses are moved into the lab (``bundled_targets``).
An expectation may say ``needs = "helper"`` (only a probe with the control helper can
reach it), name the classifier ``rule`` the export must show (say,
``throughput.not_slower``: the throughput test ran and found no throttle), say what a
correct probe says without the helper (``without_helper``: "inconclusive", the default, or
"accessible" where only the helper could see the interference, so none is claimed), or carry a
``known_issue``: a reported probe bug that makes the probe get this input's layer wrong
(the verdict must still be right).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shlex
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from probe.config import KEYS
from targets.load import load_many, parse_toml
from tests.lab import plan

LAB_DIR = Path(__file__).parent
SCENARIO_DIR = LAB_DIR / "scenarios"
TARGETS = LAB_DIR / "targets.toml"
# targets = ["bundled"]: the project's own list (targets/default.toml) as the lab serves it.
BUNDLED = "bundled"
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
    "targets",
    "shaper",
    "squid",
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
    rule: str | None = None  # the classifier rule the export must name, when given
    # With needs = "helper": what a correct probe says without the helper (default
    # "inconclusive"; "accessible" where nothing but the helper could see the interference,
    # so the probe claims none: a throttle of a name, a page swapped on plain HTTP).
    without_helper: str | None = None

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
class Shaper:
    """What a throttling scenario slows: one input, to a rate (after some bytes, maybe)."""

    input: str
    kbps: float
    after_bytes: int | None = None


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
    targets: tuple[Path, ...] = (TARGETS,)
    shaper: Shaper | None = None
    squid_deny: tuple[str, ...] = ()  # hosts Debian's squid denies; () runs no squid

    @property
    def needs_helper(self) -> bool:
        """Whether some expectation needs the control helper."""
        return any(e.needs == "helper" for e in self.expect.values())


def bundled_targets() -> Path:
    """targets/default.toml for the lab: its endpoints' public addresses replaced by their
    lab addresses (plan.BUNDLED_ENDPOINTS), nothing else changed; written once per content
    to the temporary directory, never over the real list."""
    text = plan.BUNDLED_LIST.read_text(encoding="utf-8")
    for public, lab in plan.BUNDLED_ENDPOINTS.items():
        text = text.replace(f'"[{public}]:', f'"{lab}:').replace(f'"{public}:', f'"{lab}:')
    text = (
        f"# Generated by tests.lab.scenario.bundled_targets from {plan.BUNDLED_LIST.name}:\n"
        "# the same list, its endpoints' public addresses moved into the lab.\n\n" + text
    )
    _lab_only(text)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"probe-lab-targets-bundled-{digest}.toml"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".part")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(partial, 0o644)  # written by root, read by the tests that run as a user
        os.replace(partial, path)
    return path


def _lab_only(text: str) -> None:
    """Refuse a list with any host the lab does not serve or any address outside it."""
    lab = ipaddress.ip_network(plan.ROUTABLE)
    listed = parse_toml(text, "bundled")
    hosts = {job.host for job in listed.inputs()}
    hosts |= {(urlsplit(url).hostname or url).lower() for url in listed.references}
    for host in sorted(hosts):
        try:
            outside = ipaddress.ip_address(host) not in lab
        except ValueError:
            outside = host not in plan.ZONE
        if outside:
            raise ScenarioError(f"targets bundled: {host} is not served by the lab")


def target_inputs(targets: tuple[Path, ...] = (TARGETS,)) -> list[str]:
    """Every input of the given target lists (by default the lab's main one), in order."""
    return [job.value for job in load_many([str(t) for t in targets]).inputs()]


def _expectation(where: str, raw: Any) -> Expectation:
    fields = {"verdict", "layer", "detail", "needs", "known_issue", "rule", "without_helper"}
    if not isinstance(raw, dict) or set(raw) - fields:
        raise ScenarioError(f"{where}: expected {{{', '.join(sorted(fields))}}}")
    e = Expectation(
        raw.get("verdict", ""),
        raw.get("layer"),
        raw.get("detail"),
        raw.get("needs"),
        raw.get("known_issue"),
        raw.get("rule"),
        raw.get("without_helper"),
    )
    if e.verdict not in VERDICTS:
        raise ScenarioError(f"{where}: verdict {e.verdict!r} is not one of {VERDICTS}")
    found = e.verdict in ("blocked", "throttled")
    if found != (e.layer is not None) or e.layer not in (None, *LAYERS):
        raise ScenarioError(
            f"{where}: a blocked or throttled input needs a layer {LAYERS}, others none"
        )
    if e.needs not in (None, "helper"):
        raise ScenarioError(f'{where}: needs must be "helper"')
    if e.without_helper not in (None, "accessible", "inconclusive") or (
        e.without_helper is not None and e.needs != "helper"
    ):
        raise ScenarioError(
            f'{where}: without_helper is "accessible" or "inconclusive", with needs = "helper"'
        )
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
    names = data.get("targets", [TARGETS.name])
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ScenarioError(f"{path}: targets must be a list of target files next to the lab")
    missing = [n for n in names if n != BUNDLED and ("/" in n or not (LAB_DIR / n).is_file())]
    if missing:
        raise ScenarioError(f"{path}: targets: {missing} are not files in {LAB_DIR}")
    targets = tuple(bundled_targets() if n == BUNDLED else LAB_DIR / n for n in names)
    inputs = target_inputs(targets)
    raw_expect = dict(data.get("expect", {}))
    default = _expectation(
        f"{path}: expect.default", raw_expect.pop("default", {"verdict": "accessible"})
    )
    strays = set(raw_expect) - set(inputs)
    if strays:
        raise ScenarioError(f"{path}: expect: {sorted(strays)} are not inputs of {names}")
    expect = {
        i: _expectation(f"{path}: expect.{i}", raw_expect[i]) if i in raw_expect else default
        for i in inputs
    }
    isp_policy: dict[str, Any] = {
        k: data[k] for k in ("resolver", "inject", "http_proxy", "tls_proxy") if k in data
    }
    shaper = None
    if "shaper" in data:
        raw = data["shaper"]
        if not isinstance(raw, dict) or set(raw) - {"input", "kbps", "after_bytes"}:
            raise ScenarioError(f"{path}: shaper: expected {{input, kbps, after_bytes?}}")
        if raw.get("input") not in inputs or not isinstance(raw.get("kbps"), int | float):
            raise ScenarioError(f"{path}: shaper: needs an input of {names} and kbps")
        after = raw.get("after_bytes")
        shaper = Shaper(raw["input"], float(raw["kbps"]), None if after is None else int(after))
    raw_squid = data.get("squid", {})
    deny = raw_squid.get("deny") if isinstance(raw_squid, dict) else None
    if "squid" in data and (
        set(raw_squid) != {"deny"}
        or not isinstance(deny, list)
        or not deny
        or not all(isinstance(h, str) for h in deny)
    ):
        raise ScenarioError(f"{path}: squid: expected {{deny = [host names]}}")
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
        targets=targets,
        shaper=shaper,
        squid_deny=tuple(deny or ()),
    )


def load_all(directory: Path = SCENARIO_DIR) -> list[Scenario]:
    """Every scenario, techniques first, each group by name."""
    found = [load(p) for p in sorted(directory.glob("*.toml"))]
    return sorted(found, key=lambda s: (s.kind != "technique", s.name))
