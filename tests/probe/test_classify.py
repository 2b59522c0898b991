"""The classifier as tables: each row is what was observed, which controls answered, the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from measurements.addresses import parse_networks
from measurements.observations import (
    Certificate,
    DNSObservation,
    DNSResponse,
    HTTPHop,
    HTTPObservation,
    HTTPTimings,
    TCPObservation,
    TLSObservation,
)
from probe.classify import classify
from probe.classify.evidence import Controls, HelperReport, InputEvidence
from probe.classify.fingerprints import load_bundled

FP = load_bundled()
PUBLIC = "93.184.215.14"  # public addresses: only classified here, never contacted
OTHER = "151.101.65.1"
HOST = "www.example.test"


def dns(
    *addresses: str, failure: str | None = None, forged: tuple[str, ...] = ()
) -> DNSObservation:
    responses = []
    if forged:
        responses.append(DNSResponse("NOERROR", forged, (), 60, 1.0))
    if addresses:
        responses.append(DNSResponse("NOERROR", addresses, (), 60, 2.0))
    first = responses[0].addresses if responses else ()
    return DNSObservation(
        HOST, "A", "udp", "192.0.2.53:53", failure, None if failure else "NOERROR",
        first, tuple(responses), 3.0,
    )  # fmt: skip


def doh(*addresses: str, failure: str | None = None) -> DNSObservation:
    return DNSObservation(
        HOST, "A", "doh", "https://doh.test/dns-query", failure, None, addresses, (), 5.0
    )


def cert(issuer: str = "CN=Good Root") -> Certificate:
    return Certificate(f"CN={HOST}", issuer, (HOST,), "2000-01-01", "3000-01-01", "ab" * 32)


def tls(
    failure: str | None = None,
    operation: str | None = None,
    *,
    sni: str = HOST,
    ip: str = PUBLIC,
    valid: bool | None = True,
    cert_failure: str | None = None,
    issuer: str = "CN=Good Root",
) -> TLSObservation:
    ok = failure is None
    return TLSObservation(
        ip, 443, sni, failure, operation, 1.0 if operation != "connect" else None,
        2.0 if ok else None, "TLSv1.3" if ok else None, None,
        (cert(issuer),) if ok else (), valid if ok else None, cert_failure, 3.0,
    )  # fmt: skip


def hop(
    status: int | None = 200,
    failure: str | None = None,
    operation: str | None = None,
    *,
    url: str = f"https://{HOST}/",
    body: bytes = b"<title>Example</title>",
    headers: tuple[tuple[str, str], ...] = (),
    refused: str | None = None,
    title: str | None = "Example",
    malformed: bool = False,
    ip: str | None = PUBLIC,
    total_ms: float | None = None,
) -> HTTPHop:
    return HTTPHop(
        url, ip, failure, operation, status, headers, None, title, len(body), "00", body,
        False, "TLSv1.3", None, HTTPTimings(total_ms=total_ms), refused, malformed=malformed,
    )  # fmt: skip


def http(*hops: HTTPHop) -> HTTPObservation:
    return HTTPObservation(hops[0].url, hops, 10.0)


def tcp(failure: str | None = None) -> TCPObservation:
    return TCPObservation(PUBLIC, 443, failure, None if failure else 1.0, 2.0)


@dataclass
class Case:
    name: str
    ev: InputEvidence
    ctl: Controls = field(default_factory=Controls)
    verdict: str = "accessible"
    detail: str = "ok"
    layer: str | None = None
    routable: tuple[str, ...] = ()


def url(**kw: object) -> InputEvidence:
    base: dict[str, object] = {
        "kind": "url", "input": f"https://{HOST}/", "hostname": HOST, "scheme": "https",
    }  # fmt: skip
    base.update(kw)
    return InputEvidence(**base)  # type: ignore[arg-type]


def endpoint(*attempts: TCPObservation) -> InputEvidence:
    return InputEvidence("endpoint", f"{PUBLIC}:443", None, None, tcp=attempts)


NX = "dns_nxdomain_error"
GOOD = {"dns": (dns(PUBLIC),), "tls": (tls(),), "http": (http(hop()),)}
DOH_OK = Controls(doh=(doh(PUBLIC),))

CASES = [
    # Rule 2: an offline vantage claims nothing.
    Case("offline", url(**GOOD), Controls(vantage_ok=False), "inconclusive", "vantage.offline"),
    Case("all fine", url(**GOOD), DOH_OK),
    # Rule 4: DNS.
    Case("nxdomain vs doh", url(dns=(dns(failure=NX),) * 2), DOH_OK, "blocked", "dns.nxdomain", "dns"),
    Case("servfail vs doh", url(dns=(dns(failure="dns_servfail_error"),)), DOH_OK, "blocked", "dns.servfail", "dns"),
    Case("refused vs doh", url(dns=(dns(failure="dns_refused_error"),)), DOH_OK, "blocked", "dns.servfail", "dns"),
    Case("nxdomain, doh nxdomain too", url(dns=(dns(failure=NX),)), Controls(doh=(doh(failure=NX),)), "inconclusive", "site.down"),
    Case("nxdomain, doh failed", url(dns=(dns(failure=NX),)), Controls(doh=(doh(failure="generic_timeout_error"),)), "inconclusive", "control.failed"),
    Case("nxdomain, no doh at all", url(dns=(dns(failure=NX),)), Controls(), "inconclusive", "control.failed"),
    Case("resolver timeout is not labelled blocking", url(dns=(dns(failure="generic_timeout_error"),)), DOH_OK, "inconclusive", "control.failed"),
    Case("transient dns failure then ok", url(dns=(dns(failure=NX), dns(PUBLIC)), tls=(tls(),), http=(http(hop()),)), DOH_OK),
    Case("bogon vs doh", url(dns=(dns("10.10.34.34"),)), DOH_OK, "blocked", "dns.bogon", "dns"),
    Case("loopback answer vs doh", url(dns=(dns("127.0.0.1"),)), DOH_OK, "blocked", "dns.bogon", "dns"),
    Case("bogon, doh agrees", url(dns=(dns("10.1.1.1"),)), Controls(doh=(doh("10.1.1.1"),)), "inconclusive", "control.failed"),
    Case("lab range is routable when listed", url(dns=(dns("198.18.0.10"),), tls=(tls(ip="198.18.0.10"),), http=(http(hop()),)), Controls(doh=(doh("198.18.0.10"),)), routable=("198.18.0.0/15",)),
    Case("lab range is bogon when not listed", url(dns=(dns("198.18.0.10"),)), DOH_OK, "blocked", "dns.bogon", "dns"),
    Case("known sinkhole", url(dns=(dns("195.208.152.206"),)), DOH_OK, "blocked", "dns.blockpage_ip", "dns"),
    Case("injection", url(dns=(dns(PUBLIC, forged=(OTHER,)),)), DOH_OK, "blocked", "dns.injection", "dns"),
    Case("same answer twice is no injection", url(dns=(dns(PUBLIC, forged=(PUBLIC,)),), tls=(tls(),), http=(http(hop()),)), DOH_OK),
    Case("CDN-localised answer with a valid certificate", url(dns=(dns(OTHER),), tls=(tls(ip=OTHER),), http=(http(hop()),)), DOH_OK),
    Case(
        "steered to a server with an invalid cert while DoH's address validates",
        url(dns=(dns(OTHER),), tls=(tls(ip=OTHER, valid=False, cert_failure="ssl_invalid_hostname"),)),
        Controls(doh=(doh(PUBLIC),), tls_at_control_addresses=(tls(),)),
        "blocked", "dns.blockpage_ip", "dns",
    ),
    Case(
        "steered to a dead address while DoH's address works",
        url(dns=(dns(OTHER),), tls=(tls("generic_timeout_error", "connect", ip=OTHER),)),
        Controls(doh=(doh(PUBLIC),), tls_at_control_addresses=(tls(),)),
        "blocked", "dns.blockpage_ip", "dns",
    ),
    # TCP: without a control that got through, a failed connect proves nothing.
    Case("connect timeout, no helper", url(dns=(dns(PUBLIC),), tls=(tls("generic_timeout_error", "connect"),) * 2), DOH_OK, "inconclusive", "control.failed"),
    Case(
        "connect timeout, helper connected",
        url(dns=(dns(PUBLIC),), tls=(tls("generic_timeout_error", "connect"),)),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(tcp_ok=True)),
        "blocked", "tcp.timeout", "tcp",
    ),
    Case(
        "connect refused, helper could not connect either",
        url(dns=(dns(PUBLIC),), tls=(tls("connection_refused", "connect"),)),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(tcp_ok=False)),
        "inconclusive", "site.down",
    ),
    Case("endpoint ok", endpoint(tcp())),
    Case("endpoint ok on retry", endpoint(tcp("generic_timeout_error"), tcp())),
    Case("endpoint fails, no helper", endpoint(tcp("connection_refused"), tcp("connection_refused")), Controls(), "inconclusive", "control.failed"),
    Case("endpoint reset, helper ok", endpoint(tcp("connection_reset")), Controls(helper=HelperReport(tcp_ok=True)), "blocked", "tcp.reset", "tcp"),
    # Rule 5: TLS.
    Case(
        "reset after ClientHello, innocuous SNI fine",
        url(dns=(dns(PUBLIC),), tls=(tls("connection_reset", "tls_handshake"),) * 2),
        Controls(doh=(doh(PUBLIC),), tls_innocuous=(tls(sni="www.example.com", valid=None),)),
        "blocked", "tls.reset", "tls",
    ),
    Case(
        "timeout after ClientHello, innocuous SNI fine",
        url(dns=(dns(PUBLIC),), tls=(tls("generic_timeout_error", "tls_handshake"),)),
        Controls(doh=(doh(PUBLIC),), tls_innocuous=(tls(sni="www.example.com", valid=None),)),
        "blocked", "tls.timeout", "tls",
    ),
    Case(
        "eof after ClientHello, innocuous SNI fine",
        url(dns=(dns(PUBLIC),), tls=(tls("eof_error", "tls_handshake"),)),
        Controls(doh=(doh(PUBLIC),), tls_innocuous=(tls(sni="www.example.com", valid=None),)),
        "blocked", "tls.eof", "tls",
    ),
    Case(
        "reset for every SNI: not SNI filtering",
        url(dns=(dns(PUBLIC),), tls=(tls("connection_reset", "tls_handshake"),)),
        Controls(doh=(doh(PUBLIC),), tls_innocuous=(tls("connection_reset", "tls_handshake", sni="www.example.com"),)),
        "inconclusive", "control.failed",
    ),
    Case(
        "handshake alert for the name only: the server may not serve it",
        url(dns=(dns(PUBLIC),), tls=(tls("ssl_failed_handshake", "tls_handshake"),)),
        Controls(doh=(doh(PUBLIC),), tls_innocuous=(tls(sni="www.example.com", valid=None),)),
        "inconclusive", "control.failed",
    ),
    Case(
        "known interception root",
        url(dns=(dns(PUBLIC),), tls=(tls(valid=False, cert_failure="ssl_unknown_authority", issuer="CN=Information Security Certification Authority"),)),
        DOH_OK, "blocked", "tls.mitm", "tls",
    ),
    Case(
        "unknown root, no control saw the genuine chain",
        url(dns=(dns(PUBLIC),), tls=(tls(valid=False, cert_failure="ssl_unknown_authority", issuer="CN=Self Signed"),)),
        DOH_OK, "inconclusive", "control.failed",
    ),
    Case(
        "unknown root, helper saw a valid chain",
        url(dns=(dns(PUBLIC),), tls=(tls(valid=False, cert_failure="ssl_unknown_authority", issuer="CN=Self Signed"),)),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(tls_valid=True)),
        "blocked", "tls.mitm", "tls",
    ),
    Case(
        "expired certificate is the site's problem",
        url(dns=(dns(PUBLIC),), tls=(tls(valid=False, cert_failure="ssl_invalid_certificate"),)),
        DOH_OK, "inconclusive", "control.failed",
    ),
    # Rule 6: HTTP.
    Case(
        "reset after the request, innocuous Host answered",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(None, "connection_reset", "http_request")),) * 2),
        Controls(doh=(doh(PUBLIC),), http_innocuous=(http(hop(404)),)),
        "blocked", "http.reset", "http",
    ),
    Case(
        # A default site answering an unknown Host at once says nothing about a slow path.
        "timeout after the request, innocuous Host answered: not enough",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(None, "generic_timeout_error", "http_request")),)),
        Controls(doh=(doh(PUBLIC),), http_innocuous=(http(hop(200)),)),
        "inconclusive", "control.failed",
    ),
    Case(
        "timeout after the request, the helper got the same URL promptly",
        url(dns=(dns(PUBLIC),), tls=(tls(),), http=(http(hop(None, "generic_timeout_error", "http_request", total_ms=10_000)),) * 2),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(tcp_ok=True, tls_valid=True, status=200, first_byte_ms=80)),
        "blocked", "http.timeout", "http",
    ),
    Case(
        # One slow path on a healthy server: slow for the helper too, only not past its limit.
        "timeout after the request, the helper got it but late",
        url(dns=(dns(PUBLIC),), tls=(tls(),), http=(http(hop(None, "generic_timeout_error", "http_request", total_ms=10_000)),) * 2),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(tcp_ok=True, tls_valid=True, status=200, first_byte_ms=9_000)),
        "inconclusive", "control.failed",
    ),
    Case(
        "reset after the request, the helper got the same URL",
        url(dns=(dns(PUBLIC),), tls=(tls(),), http=(http(hop(None, "connection_reset", "http_request")),) * 2),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(tcp_ok=True, tls_valid=True, status=200)),
        "blocked", "http.reset", "http",
    ),
    Case(
        "timeout after the request, the helper timed out too",
        url(dns=(dns(PUBLIC),), tls=(tls(),), http=(http(hop(None, "generic_timeout_error", "http_request")),)),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(tcp_ok=True, tls_valid=True)),
        "inconclusive", "control.failed",
    ),
    Case(
        "a malformed answer, no control: the server's fault as likely",
        url(dns=(dns(PUBLIC),), tls=(tls(),), http=(http(hop(None, "unknown_failure", "http_request", malformed=True)),)),
        Controls(doh=(doh(PUBLIC),), http_innocuous=(http(hop(200)),)),
        "inconclusive", "http.malformed",
    ),
    Case(
        "a malformed answer while the helper got a well-formed one",
        url(dns=(dns(PUBLIC),), tls=(tls(),), http=(http(hop(None, "unknown_failure", "http_request", malformed=True)),)),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(tcp_ok=True, tls_valid=True, status=200)),
        "blocked", "http.malformed", "http",
    ),
    Case(
        "plain http, connect refused, no helper",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(None, "connection_refused", "connect", url=f"http://{HOST}/")),) * 2),
        Controls(doh=(doh(PUBLIC),)), "inconclusive", "control.failed",
    ),
    Case(
        "plain http, connect timeout, helper connected",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(None, "generic_timeout_error", "connect", url=f"http://{HOST}/")),) * 2),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(tcp_ok=True)), "blocked", "tcp.timeout", "tcp",
    ),
    Case(
        # The helper vouched for the input's address, not for the hop's.
        "a redirect to an address that refuses, helper connected to the first",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(301, url=f"http://{HOST}/"), hop(None, "connection_refused", "connect", url="http://other.test/", ip=OTHER)),)),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(tcp_ok=True)), "inconclusive", "control.failed",
    ),
    Case(
        "a page trickling in until the timeout is slow, not blocked",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(200, "generic_timeout_error", "http_body")),)),
        Controls(doh=(doh(PUBLIC),), http_innocuous=(http(hop(200)),)),
        "inconclusive", "control.failed",
    ),
    Case(
        "reset in the middle of the body, innocuous Host answered",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(200, "connection_reset", "http_body")),)),
        Controls(doh=(doh(PUBLIC),), http_innocuous=(http(hop(200)),)),
        "blocked", "http.reset", "http",
    ),
    Case(
        "reset after the request for every Host",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(None, "connection_reset", "http_request")),)),
        Controls(doh=(doh(PUBLIC),), http_innocuous=(http(hop(None, "connection_reset", "http_request")),)),
        "inconclusive", "control.failed",
    ),
    Case(
        "fingerprinted blockpage",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(200, body=b"This resource has been blocked by decision of the authorities")),)),
        DOH_OK, "blocked", "http.blockpage", "http",
    ),
    Case(
        "redirect to a known warning page",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(302, headers=(("Location", "http://warning.rt.ru/?x"),)), hop(200, url="http://warning.rt.ru/?x")),)),
        DOH_OK, "blocked", "http.redirect", "http",
    ),
    Case(
        "plain HTTP: the resolver's address serves a blockpage, DoH's the site",
        url(scheme="http", dns=(dns(OTHER),), http=(http(hop(200, body=b"blocked by decision of the authorities")),)),
        Controls(doh=(doh(PUBLIC),), http_at_control_addresses=(http(hop(200)),)),
        "blocked", "dns.blockpage_ip", "dns",
    ),
    Case(
        "plain HTTP: a transparent proxy serves the blockpage at every address",
        url(scheme="http", dns=(dns(OTHER),), http=(http(hop(200, body=b"blocked by decision of the authorities")),)),
        Controls(doh=(doh(PUBLIC),), http_at_control_addresses=(http(hop(200, body=b"blocked by decision of the authorities")),)),
        "blocked", "http.blockpage", "http",
    ),
    Case(
        "plain HTTP, CDN-localised: another address, the same working page",
        url(scheme="http", dns=(dns(OTHER),), http=(http(hop(200)),)),
        Controls(doh=(doh(PUBLIC),), http_at_control_addresses=(http(hop(200)),)),
    ),
    Case("403 to everyone is not blocking", url(**{**GOOD, "http": (http(hop(403)),)}), DOH_OK),
    Case(
        "page differs from the helper's: title and length (plain HTTP)",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(200, title="Notice")),)),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(status=200, title="Example", body_length=2000)),
        "blocked", "http.diff", "http",
    ),
    Case(
        "page differs from the helper's: status (plain HTTP)",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(403)),)),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(status=200, title="Example", body_length=22)),
        "blocked", "http.diff", "http",
    ),
    Case(
        "a localised title alone is not a diff",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(200, title="Пример")),)),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(status=200, title="Example", body_length=23)),
    ),
    Case(
        "a throughput URL's first 16 KiB (206 to our Range) against the helper's whole 200",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(206, title=None, body=bytes(16384))),)),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(status=200, title=None, body_length=1 << 20)),
    ),
    Case(
        "same page as the helper's",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(200)),)),
        Controls(doh=(doh(PUBLIC),), helper=HelperReport(status=200, title="Example", body_length=22)),
    ),
    Case(
        "redirect to a private address is not followed",
        url(scheme="http", dns=(dns(PUBLIC),), http=(http(hop(302), hop(None, url="http://10.0.0.1/", refused="private")),)),
        DOH_OK, "inconclusive", "control.failed",
    ),
    Case(
        "target not contacted by the safety rule",
        url(dns=(dns(PUBLIC),), not_contacted="resolves to a private address"),
        DOH_OK, "inconclusive", "control.failed",
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_classify(case: Case) -> None:
    got = classify(case.ev, case.ctl, FP, parse_networks(case.routable))
    assert (got.verdict, got.detail, got.layer) == (case.verdict, case.detail, case.layer), got
    assert got.reason and got.rule


def test_blocked_always_names_its_evidence() -> None:
    for case in CASES:
        got = classify(case.ev, case.ctl, FP, parse_networks(case.routable))
        if got.verdict == "blocked":
            assert got.layer is not None and got.evidence, case.name


def test_no_failure_alone_is_blocked() -> None:
    """Rule 1 swept: every single-failure observation with no control at all is never blocked."""
    failures = ["connection_reset", "generic_timeout_error", "eof_error", "connection_refused"]
    for failure in failures:
        for op in ("connect", "tls_handshake"):
            ev = url(dns=(dns(PUBLIC),), tls=(tls(failure, op),))
            assert classify(ev, Controls(), FP).verdict == "inconclusive"
        ev = url(
            scheme="http", dns=(dns(PUBLIC),), http=(http(hop(None, failure, "http_request")),)
        )
        assert classify(ev, Controls(), FP).verdict == "inconclusive"
