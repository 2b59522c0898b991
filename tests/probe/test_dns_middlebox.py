"""DNS that points at a middlebox, and ghost names (probe/classify/middlebox.py), as tables.

A middlebox answer: the resolver's address is not among DoH's, and what it serves is not the
site's. A ghost name: the resolver answers a name DoH says does not exist. Each technique has
its look-alike beside it (a CDN's local edge, a name that exists only on the local network, a
resolver that answers every missing name), which must never come out blocked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from measurements.observations import Certificate, HTTPObservation, TLSObservation
from probe.classify import classify
from probe.classify.evidence import Controls, HelperReport, InputEvidence
from probe.classify.fingerprints import load_bundled
from probe.classify.pagediff import Page, differs, same_page
from tests.probe.test_classify import HOST, OTHER, PUBLIC, dns, doh, hop, http, tls, url

FP = load_bundled()
NX = "dns_nxdomain_error"
PLAIN = {"input": f"http://{HOST}/", "scheme": "http"}
SITE = b"<title>Example</title>" + b"The genuine site. " * 1000
DENIED = b"<html><head><title>Access Denied</title></head><body>Access Denied</body></html>"
WARNING = b"<html><head><title>Notice</title></head><body>Not available.</body></html>"
KZ_BLOCKPAGE = b"Access to this resource has been blocked by decision of the authorities."
GONE = (doh(failure=NX),)  # every DoH answer: the name does not exist
MADE_UP_NX = (dns(failure=NX),)  # the resolver says a made-up name does not exist
MADE_UP_ANSWERED = (dns("198.51.100.7"),)  # ... or invents an address for it too


def page(body: bytes, title: str | None, status: int = 200, ip: str = OTHER) -> HTTPObservation:
    return http(hop(status, url=f"http://{HOST}/", body=body, title=title, ip=ip))


def other_cert(name: str = "blockpage.isp.test", issuer: str = "CN=Good Root") -> TLSObservation:
    """A handshake at OTHER whose leaf names another host."""
    leaf = Certificate(f"CN={name}", issuer, (name,), "2000-01-01", "3000-01-01", "cd" * 32)
    shown = tls(ip=OTHER, valid=False, cert_failure="ssl_invalid_hostname", issuer=issuer)
    return TLSObservation(**{**_fields(shown), "chain": (leaf,)})


def _fields(obs: TLSObservation) -> dict[str, object]:
    return {f: getattr(obs, f) for f in obs.__slots__}  # type: ignore[attr-defined]


@dataclass
class Case:
    name: str
    ev: InputEvidence
    ctl: Controls = field(default_factory=Controls)
    verdict: str = "accessible"
    detail: str = "ok"
    layer: str | None = None
    rule: str | None = None


MIDDLEBOX = Controls(
    doh=(doh(PUBLIC),), http_at_control_addresses=(page(SITE, "Example", ip=PUBLIC),)
)

CASES = [
    # Answers that differ from DoH's, plain HTTP: the page at DoH's address is the yardstick.
    Case(
        "a transparent proxy's 200 Access Denied where DoH's address serves the site",
        url(**PLAIN, dns=(dns(OTHER),), http=(page(DENIED, "Access Denied"),)),
        MIDDLEBOX, "blocked", "dns.blockpage_ip", "dns", "dns.middlebox_page",
    ),
    Case(
        "a 302 to a warning page where DoH's address serves the site",
        url(**PLAIN, dns=(dns(OTHER),), http=(http(hop(302, url=f"http://{HOST}/", ip=OTHER), hop(200, url="http://warn.test/", body=WARNING, title="Notice")),)),
        MIDDLEBOX, "blocked", "dns.blockpage_ip", "dns", "dns.middlebox_page",
    ),
    Case(
        "look-alike: a CDN's local edge serves the same page",
        url(**PLAIN, dns=(dns(OTHER),), http=(page(SITE + b"<!-- edge 7 -->", "Example"),)),
        MIDDLEBOX, rule="http.ok",
    ),
    Case(
        "look-alike: a CDN edge with a localised title, the same length",
        url(**PLAIN, dns=(dns(OTHER),), http=(page(SITE, "Пример"),)),
        MIDDLEBOX, rule="http.ok",
    ),
    Case(
        "no page came from DoH's address: another address's page is unvouched, not accessible",
        url(**PLAIN, dns=(dns(OTHER),), http=(page(DENIED, "Access Denied"),)),
        Controls(doh=(doh(PUBLIC),), http_at_control_addresses=(http(hop(None, "generic_timeout_error", "connect", ip=PUBLIC)),)),
        "inconclusive", "control.failed", rule="dns.http_unvouched",
    ),
    Case(
        "the resolver shares an address with DoH: the HTTP rules alone",
        url(**PLAIN, dns=(dns(OTHER, PUBLIC),), http=(page(DENIED, "Access Denied"),)),
        MIDDLEBOX, rule="http.ok",
    ),
    # Ghost names over HTTPS: the certificate shows whose server the address is.
    Case(
        "ghost: the address's certificate names another host",
        url(dns=(dns(OTHER),), tls=(other_cert(),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_NX),
        "blocked", "dns.blockpage_ip", "dns", "dns.ghost_name",
    ),
    Case(
        "ghost: a self-signed certificate for another host",
        url(dns=(dns(OTHER),), tls=(other_cert(issuer="CN=blockpage.isp.test"),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_NX),
        "blocked", "dns.blockpage_ip", "dns", "dns.ghost_name",
    ),
    Case(
        "ghost, but the made-up name was never answered: inconclusive",
        url(dns=(dns(OTHER),), tls=(other_cert(),)),
        Controls(doh=GONE, dns_nonexistent=(dns(failure="generic_timeout_error"),)),
        "inconclusive", "control.failed", rule="dns.ghost_no_control",
    ),
    Case(
        "look-alike: a resolver that answers every missing name (NXDOMAIN rewriting)",
        url(dns=(dns(OTHER),), tls=(other_cert(),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_ANSWERED),
        "inconclusive", "site.down", rule="dns.nxdomain_rewritten",
    ),
    Case(
        "look-alike: split-horizon, a valid certificate for the name",
        url(dns=(dns(OTHER),), tls=(tls(ip=OTHER),), http=(http(hop(ip=OTHER)),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_NX), rule="http.ok",
    ),
    Case(
        "look-alike: split-horizon, the intranet's own CA names the host",
        url(dns=(dns(OTHER),), tls=(tls(ip=OTHER, valid=False, cert_failure="ssl_unknown_authority", issuer="CN=Corp CA"),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_NX),
        "inconclusive", "control.failed", rule="dns.ghost_unproven",
    ),
    Case(
        "look-alike: split-horizon to a private address is never contacted",
        url(dns=(dns("10.20.30.40"),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_NX),
        "inconclusive", "control.failed", rule="dns.bogon_no_control",
    ),
    Case(
        "ghost, the address takes no connection: nothing shown",
        url(dns=(dns(OTHER),), tls=(tls("connection_refused", "connect", ip=OTHER),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_NX),
        "inconclusive", "control.failed", rule="dns.ghost_unproven",
    ),
    Case(
        "ghost, a known interception root: tls.mitm by itself",
        url(dns=(dns(OTHER),), tls=(other_cert(issuer="CN=Information Security Certification Authority"),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_NX),
        "blocked", "tls.mitm", "tls", "tls.mitm_fingerprint",
    ),
    Case(
        "the helper's resolver knows the name: no ghost, the TLS rules decide",
        url(dns=(dns(OTHER),), tls=(other_cert(),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_NX, helper=HelperReport(addresses=(PUBLIC,))),
        "inconclusive", "control.failed", rule="tls.invalid_no_control",
    ),
    Case(
        "one DoH says NXDOMAIN, another that the name exists without an address: no ghost",
        url(dns=(dns(OTHER),), tls=(other_cert(),)),
        Controls(doh=(*GONE, doh(failure="dns_no_answer")), dns_nonexistent=MADE_UP_NX),
        "inconclusive", "control.failed", rule="tls.invalid_no_control",
    ),
    # Ghost names over plain HTTP: a blockpage, or one page whatever name is asked.
    Case(
        "ghost: a fingerprinted blockpage at the invented address",
        url(**PLAIN, dns=(dns(OTHER),), http=(page(KZ_BLOCKPAGE, "Access restricted"),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_NX),
        "blocked", "dns.blockpage_ip", "dns", "dns.ghost_name",
    ),
    Case(
        "ghost: an unknown warning, the same page for an innocuous Host",
        url(**PLAIN, dns=(dns(OTHER),), http=(page(WARNING, "Notice"),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_NX, http_innocuous=(page(WARNING, "Notice"),)),
        "blocked", "dns.blockpage_ip", "dns", "dns.ghost_name",
    ),
    Case(
        "look-alike: split-horizon virtual host, another page for an innocuous Host",
        url(**PLAIN, dns=(dns(OTHER),), http=(page(SITE, "Intranet"),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_NX, http_innocuous=(page(b"<title>Default</title>", "Default"),)),
        "inconclusive", "control.failed", rule="dns.ghost_unproven",
    ),
    Case(
        "ghost page, no innocuous control: unproven, not accessible",
        url(**PLAIN, dns=(dns(OTHER),), http=(page(WARNING, "Notice"),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_NX),
        "inconclusive", "control.failed", rule="dns.ghost_unproven",
    ),
    Case(
        "look-alike: an ad server for every missing name serves one page for every Host",
        url(**PLAIN, dns=(dns(OTHER),), http=(page(WARNING, "Search"),)),
        Controls(doh=GONE, dns_nonexistent=MADE_UP_ANSWERED, http_innocuous=(page(WARNING, "Search"),)),
        "inconclusive", "site.down", rule="dns.nxdomain_rewritten",
    ),
    Case(
        "both resolvers say NXDOMAIN: the name is gone",
        url(dns=(dns(failure=NX),)), Controls(doh=GONE), "inconclusive", "site.down", rule="dns.name_gone",
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_classify(case: Case) -> None:
    got = classify(case.ev, case.ctl, FP)
    assert (got.verdict, got.detail, got.layer) == (case.verdict, case.detail, case.layer), got
    if case.rule is not None:
        assert got.rule == case.rule, got
    assert got.reason


def test_a_middlebox_verdict_names_both_pages() -> None:
    got = classify(CASES[0].ev, CASES[0].ctl, FP)
    assert got.evidence["page"]["title"] == "Access Denied"
    assert got.evidence["control_page"]["title"] == "Example"
    assert got.evidence["page"]["address"] == OTHER
    assert got.evidence["control_page"]["address"] == PUBLIC


def test_a_ghost_verdict_names_its_proof() -> None:
    ghost = next(c for c in CASES if c.name.startswith("ghost: the address's certificate"))
    got = classify(ghost.ev, ghost.ctl, FP)
    assert got.evidence["certificate"]["sans"] == ["blockpage.isp.test"]
    assert got.evidence["doh_failures"] == [NX] and got.evidence["made_up_name"]
    assert "does not exist" in got.reason


def test_without_the_made_up_name_no_ghost_is_blocked() -> None:
    # Rule 1 for ghosts: DoH's NXDOMAIN and a page are not enough without the resolver's own
    # word that it does not answer every missing name.
    for case in CASES:
        if case.rule == "dns.ghost_name":
            ctl = Controls(**{**_ctl_fields(case.ctl), "dns_nonexistent": ()})
            assert classify(case.ev, ctl, FP).verdict == "inconclusive", case.name


def _ctl_fields(ctl: Controls) -> dict[str, object]:
    return {f: getattr(ctl, f) for f in ctl.__slots__}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("a", "b", "how", "same"),
    [
        (Page(200, "A", 1000), Page(200, "A", 1000), None, True),
        (Page(200, "A", 1000), Page(302, "A", 1000), "another status.", False),
        (Page(200, "A", 100), Page(200, "B", 1000), "another title and length.", False),
        (Page(200, "A", 100), Page(200, "A", 1000), None, False),  # same title: no diff, no proof
        (Page(200, "A", 950), Page(200, "B", 1000), None, False),  # a localised title
        (Page(200, "A", 10, partial=True), Page(200, "B", 1000), None, False),
    ],
)
def test_page_comparison(a: Page, b: Page, how: str | None, same: bool) -> None:
    assert differs(a, b) == how
    assert same_page(a, b) is same
