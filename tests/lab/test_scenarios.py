"""The scenario files themselves (no root needed): valid, and covering LAB.md's tables; and
the lab site's broken and slow paths, served on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from targets.load import load_many
from tests import prerequisites
from tests.lab import internet, plan, policy, squid
from tests.lab.policy import PolicyFile
from tests.lab.scenario import (
    SCENARIO_DIR,
    TARGETS,
    ScenarioError,
    bundled_targets,
    load,
    load_all,
    target_inputs,
)
from tests.lab.state import Paths

THROUGHPUT_TARGETS = TARGETS.with_name("targets-throughput.toml")

# LAB.md's techniques and look-alikes -> scenario.
COVERAGE = {
    "DNS NXDOMAIN / SERVFAIL / REFUSED": ["dns-nxdomain", "dns-servfail", "dns-refused"],
    "DNS bogon answer": ["dns-bogon", "dns-bogon-loopback"],
    "DNS blockpage IP": ["dns-blockpage-ip"],
    "DNS injection": ["dns-injection"],
    "SYN dropped": ["tcp-syn-drop"],
    "RST to SYN": ["tcp-rst-syn"],
    "RST after ClientHello": ["tls-sni-reset"],
    "Timeout after ClientHello": ["tls-sni-timeout"],
    "HTTP blockpage / 302 to a warning page": [
        "http-blockpage",
        "http-redirect",
        "http-blockpage-unknown",
        "http-redirect-unknown",
    ],
    "HTTP reset on Host": ["http-host-reset"],
    "TLS interception": ["tls-mitm-national-root", "tls-mitm-2019-chain", "tls-mitm-unknown-root"],
    "SNI throttling (policer)": ["throttle-sni-128", "throttle-sni-512"],
    "IP throttling": ["throttle-ip"],
    "Delayed throttling": ["throttle-delayed"],
    "server down for everyone": ["site-down"],
    "403 to everyone": ["forbidden-403"],
    "CDN-localised DNS": ["cdn-localised"],
    "slow home link": ["slow-link"],
    "lossy link": ["lossy-link"],
    "vantage offline": ["vantage-offline"],
    "garbage, an endless header or 100,000 headers on one path": [
        "http-garbage-path",
        "http-endless-header",
    ],
    "one slow path on a healthy server": ["http-slow-path"],
    "a CDN/WAF challenge shown to the vantage only": ["cdn-challenge-vantage"],
    "Real filtering software (squid's stock ERR_ACCESS_DENIED page)": ["http-squid-deny"],
    "HTTP blockpage in a notice's generic wording": ["http-blockpage-generic"],
    "Upload throttling": ["bundled-kz"],
    "SNI replay": ["bundled-kz"],
    "the bundled target list, every name served, under a Kazakhstan-like censor": ["bundled-kz"],
}


def test_every_scenario_loads_and_expects_every_input() -> None:
    scenarios = load_all()
    assert len(target_inputs()) >= 5
    for s in scenarios:
        assert list(s.expect) == target_inputs(s.targets), s.name
        assert s.checks, f"{s.name}: a scenario must prove its censor works"
        if s.kind == "technique":
            found = ("blocked", "throttled")
            assert any(e.verdict in found for e in s.expect.values()), s.name


def test_throttles_and_their_look_alikes_time_every_throughput_url() -> None:
    """A throttle is found on its input alone; slow links and servers time them all, and pass."""
    throughput = set(target_inputs((THROUGHPUT_TARGETS,)))
    timed = {s.name: s for s in load_all() if set(target_inputs(s.targets)) & throughput}
    assert {"slow-link", "lossy-link", "slow-server"} <= set(timed)
    for s in timed.values():
        throttled = {i for i, e in s.expect.items() if e.verdict == "throttled"}
        if s.kind == "technique":
            assert s.shaper is not None and throttled == {s.shaper.input}, s.name
        assert not throttled or s.kind == "technique", s.name
        for value in throughput - throttled:
            # The test ran and found no throttle (not: it was skipped, or had no controls):
            # not slower than the references, or (a server slow for everyone) than the
            # helper's transfers.
            rule = s.expect[value].rule
            assert rule in ("throughput.not_slower", "throughput.slow_everywhere"), (s.name, value)


def test_the_lab_serves_every_name_of_the_bundled_list_and_nothing_outside_it() -> None:
    """Each host of targets/default.toml resolves in the lab's zone, or (an endpoint's public
    address) is moved into the lab; the names the lab had keep their addresses."""
    listed = load_many([plan.BUNDLED_LIST])
    hosts = {job.host for job in listed.inputs()}
    hosts |= {urlsplit(u).hostname or "" for u in listed.references}
    lab = ipaddress.ip_network(plan.ROUTABLE)
    for host in hosts:
        where = plan.BUNDLED_ENDPOINTS.get(host) or plan.ZONE[host]
        assert ipaddress.ip_address(where) in lab, host
    literals = {h for h in hosts if h.replace(".", "").isdigit() or ":" in h}
    assert literals and set(plan.BUNDLED_ENDPOINTS) == literals
    assert set(plan.BUNDLED_IPS).isdisjoint((*plan.WEB_IPS, plan.BLOCKPAGE_IP))
    assert plan.ZONE["www.facebook.com"] == "198.19.1.1"  # the lab's own names unchanged
    assert set(plan.BUNDLED_ZONE).isdisjoint(plan.SITE_NAMES)
    assert plan.BUNDLED_PORTS == (5222,)  # WhatsApp's chat port, served besides 80 and 443


def test_the_bundled_scenario_runs_the_real_list_with_lab_addresses_only() -> None:
    """The generated copy differs from targets/default.toml only by the moved addresses, and
    the scenario says, input by input, what the probe must find in all of it."""
    generated = bundled_targets()
    assert generated == bundled_targets()  # one file per content
    real = target_inputs((plan.BUNDLED_LIST,))
    moved = target_inputs((generated,))
    assert len(real) == len(moved) > 100
    for before, after in zip(real, moved, strict=True):
        host, _, port = before.rpartition(":")
        assert after in (before, f"{plan.BUNDLED_ENDPOINTS.get(host)}:{port}"), before
    raw = tomllib.loads((SCENARIO_DIR / "bundled-kz.toml").read_text(encoding="utf-8"))
    assert list(raw["expect"]) == moved  # every input named, in the list's order
    s = load(SCENARIO_DIR / "bundled-kz.toml")
    assert s.targets == (generated,) and s.needs_helper
    verdicts = {e.verdict for e in s.expect.values()}
    assert verdicts == {"accessible", "blocked", "throttled"}


def test_a_throttled_expectation_needs_a_layer(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'kind = "technique"\ntargets = ["targets-throughput.toml"]\n[expect]\n'
        '"https://twitter.com/big" = { verdict = "throttled" }\n',
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError, match="needs a layer"):
        load(bad)
    bad.write_text('kind = "technique"\ntargets = ["../pyproject.toml"]\n', encoding="utf-8")
    with pytest.raises(ScenarioError, match="targets"):
        load(bad)


def test_the_squid_scenario_denies_one_host_and_squid_accepts_its_config(tmp_path: Path) -> None:
    """The config the lab writes is one Debian's squid parses; a bad [squid] table is an error."""
    s = next(s for s in load_all() if s.name == "http-squid-deny")
    assert s.squid_deny == ("www.facebook.com",)
    assert s.expect["http://facebook.com/"].verdict == "accessible"  # same address, relayed
    conf = tmp_path / "squid.conf"
    conf.write_text(squid.config(Paths(tmp_path), s.squid_deny), encoding="utf-8")
    text = conf.read_text()
    assert "acl denied dstdomain www.facebook.com" in text and " intercept" in text
    assert str(tmp_path) in text and "/var/" not in text  # nothing outside the state dir
    if not squid.available():
        prerequisites.missing("Debian's squid is not installed")
    done = subprocess.run(["squid", "-k", "parse", "-f", str(conf)], capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('kind = "technique"\n[squid]\ndeny = "www.facebook.com"\n', encoding="utf-8")
    with pytest.raises(ScenarioError, match="squid"):
        load(bad)


def test_lab_md_is_covered() -> None:
    names = {s.name for s in load_all()}
    for row, wanted in COVERAGE.items():
        assert set(wanted) <= names, f"LAB.md row {row!r} has no scenario"


def test_look_alikes_expect_no_blocking() -> None:
    for s in load_all():
        if s.kind == "look-alike":
            assert all(e.verdict in ("accessible", "inconclusive") for e in s.expect.values())


def test_broken_and_slow_paths_are_the_inputs_expected_inconclusive() -> None:
    """A scenario that breaks or slows paths expects exactly their inputs not accessible."""
    for s in load_all():
        paths = {**s.net_policy.get("broken", {}), **s.net_policy.get("slow", {})}
        for value, e in s.expect.items():
            hit = any(value.endswith(path) for path in paths if path != "/")
            assert hit == (e.verdict == "inconclusive") or not paths, (s.name, value)


async def _raw_get(port: int, path: str) -> tuple[bytes, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = asyncio.get_running_loop().time()
    request = f"GET {path} HTTP/1.1\r\nHost: www.facebook.com\r\nConnection: close\r\n\r\n"
    writer.write(request.encode())
    data = await asyncio.wait_for(reader.read(-1), 10)  # the server closes: all of it
    writer.close()
    return data, asyncio.get_running_loop().time() - started


async def test_the_lab_site_breaks_and_slows_the_paths_its_policy_names(tmp_path: Path) -> None:
    """The lab's site (on loopback): raw bad answers, then a close; a late page; the rest fine."""
    path = tmp_path / "net.json"
    policy.write(path, {"broken": {"/g": "garbage", "/e": "endless-header",
                                   "/h": "many-headers"}, "slow": {"/s": 0.5}})  # fmt: skip
    runner = web.AppRunner(internet.site_app(PolicyFile(path)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        garbage, _ = await _raw_get(port, "/g")
        assert garbage == internet.GARBAGE and b"\r\n" in garbage
        assert not garbage.startswith(b"HTTP/")
        endless, _ = await _raw_get(port, "/e")
        assert endless.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\n\r\n" not in endless
        assert len(endless) < 8 << 20
        many, _ = await _raw_get(port, "/h")
        assert many.count(b"\r\nX-Header-") == internet.MANY_HEADERS
        slow, seconds = await _raw_get(port, "/s")
        assert slow.startswith(b"HTTP/1.1 200") and seconds >= 0.5
        page, seconds = await _raw_get(port, "/anything")
        assert page.startswith(b"HTTP/1.1 200") and seconds < 0.5
    finally:
        await runner.cleanup()
