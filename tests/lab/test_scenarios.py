"""The scenario files themselves (no root needed): valid, and covering LAB.md's tables."""

from __future__ import annotations

from tests.lab.scenario import load_all, target_inputs

# LAB.md's techniques (throttling belongs to a later issue) and look-alikes -> scenario.
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
    "TLS interception": ["tls-mitm-national-root", "tls-mitm-unknown-root"],
    "server down for everyone": ["site-down"],
    "403 to everyone": ["forbidden-403"],
    "CDN-localised DNS": ["cdn-localised"],
    "slow home link": ["slow-link"],
    "lossy link": ["lossy-link"],
    "vantage offline": ["vantage-offline"],
}


def test_every_scenario_loads_and_expects_every_input() -> None:
    scenarios = load_all()
    inputs = target_inputs()
    assert len(inputs) >= 5
    for s in scenarios:
        assert list(s.expect) == inputs, s.name
        assert s.checks, f"{s.name}: a scenario must prove its censor works"
        if s.kind == "technique":
            assert any(e.verdict == "blocked" for e in s.expect.values()), s.name


def test_lab_md_is_covered() -> None:
    names = {s.name for s in load_all()}
    for row, wanted in COVERAGE.items():
        assert set(wanted) <= names, f"LAB.md row {row!r} has no scenario"


def test_look_alikes_expect_no_blocking() -> None:
    for s in load_all():
        if s.kind == "look-alike":
            assert all(e.verdict in ("accessible", "inconclusive") for e in s.expect.values())
