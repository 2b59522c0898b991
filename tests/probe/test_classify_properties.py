"""The classifier is total: any set of observations and controls gives a verdict, never raises.

Hypothesis builds observation sets of every kind (DNS, TCP, TLS, HTTP hops, throughput
trials), with every failure of the closed vocabulary, at every operation, with and without
each control (DoH, innocuous SNI and Host, the helper, throughput controls and history).
Whatever it builds, ``classify`` answers with a verdict from the closed set and a reason; and
no single failure without any control is ever "blocked" (rule 1 of docs/architecture.md).
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from measurements.failures import Failure
from measurements.observations import (
    Certificate,
    DNSObservation,
    DNSResponse,
    HTTPHop,
    HTTPObservation,
    HTTPTimings,
    TCPObservation,
    ThroughputObservation,
    TLSObservation,
)
from probe.classify import classify
from probe.classify.controls import helper_decides
from probe.classify.evidence import Controls, HelperReport, InputEvidence, PastRate
from probe.classify.fingerprints import load_bundled
from probe.classify.verdict import DETAILS

FP = load_bundled()
FAILURES = [f.value for f in Failure]
OPERATIONS = ["connect", "tls_handshake", "http_request", "http_body", None]
IPS = ["93.184.215.14", "93.184.215.15", "10.0.0.1", "127.0.0.1", "::1", "2606:4700::1111",
       "195.208.152.206", "not-an-ip", ""]  # fmt: skip
HOST = "www.example.test"

failure = st.none() | st.sampled_from(FAILURES)
ms = st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False)
ip = st.sampled_from(IPS)
text = st.text(max_size=20)


def _certificate() -> st.SearchStrategy[Certificate]:
    return st.builds(
        Certificate,
        subject=st.sampled_from(["CN=www.example.test", "C=KZ, CN=Security Certificate", ""]),
        issuer=st.sampled_from(["CN=Good Root", "CN=Qaznet Trust Network", ""]),
        sans=st.lists(st.sampled_from([HOST, "*.example.test", "other.test"]), max_size=3).map(
            tuple
        ),
        not_before=st.just("2026-01-01T00:00:00Z"),
        not_after=st.just("2027-01-01T00:00:00Z"),
        sha256=st.text(alphabet="0123456789abcdef", min_size=0, max_size=64),
    )


dns_obs = st.builds(
    DNSObservation,
    hostname=st.just(HOST),
    qtype=st.just("A"),
    transport=st.sampled_from(["udp", "tcp", "system", "doh"]),
    resolver=st.just("198.18.0.53:53"),
    failure=failure,
    rcode=st.none() | st.sampled_from(["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED"]),
    addresses=st.lists(ip, max_size=3).map(tuple),
    responses=st.lists(
        st.builds(
            DNSResponse,
            rcode=st.sampled_from(["NOERROR", "NXDOMAIN"]),
            addresses=st.lists(ip, max_size=2).map(tuple),
            cnames=st.just(()),
            ttl=st.none() | st.integers(0, 86400),
            received_ms=st.floats(0, 5000),
        ),
        max_size=3,
    ).map(tuple),
    duration_ms=st.floats(0, 5000),
)
tcp_obs = st.builds(
    TCPObservation, ip=ip, port=st.integers(0, 65535), failure=failure, connect_ms=ms,
    duration_ms=st.floats(0, 5000),
)  # fmt: skip
tls_obs = st.builds(
    TLSObservation,
    ip=ip,
    port=st.just(443),
    sni=st.none() | st.sampled_from([HOST, "www.example.com"]),
    failure=failure,
    operation=st.sampled_from(OPERATIONS),
    connect_ms=ms,
    handshake_ms=ms,
    version=st.none() | st.just("TLSv1.3"),
    alpn=st.none() | st.just("h2"),
    chain=st.lists(_certificate(), max_size=3).map(tuple),
    cert_valid=st.none() | st.booleans(),
    cert_failure=st.none() | st.sampled_from(FAILURES),
    duration_ms=st.floats(0, 5000),
)
hop = st.builds(
    HTTPHop,
    url=st.sampled_from([f"https://{HOST}/", f"http://{HOST}/a?b=1", "http://other.test/", ""]),
    ip=st.none() | ip,
    failure=failure,
    operation=st.sampled_from(OPERATIONS),
    status=st.none() | st.integers(100, 599),
    headers=st.lists(st.tuples(text, text), max_size=3).map(tuple),
    location=st.none() | st.sampled_from(["http://other.test/", "/x", "javascript:1"]),
    title=st.none() | text,
    body_length=st.none() | st.integers(0, 1 << 20),
    body_sha256=st.none() | st.just("00"),
    body_head=st.binary(max_size=64) | st.just(b"<title>Access Denied</title>"),
    truncated=st.booleans(),
    tls_version=st.none() | st.just("TLSv1.3"),
    certificate=st.none() | _certificate(),
    timings=st.builds(HTTPTimings, connect_ms=ms, tls_ms=ms, first_byte_ms=ms, total_ms=ms),
    refused=st.none() | text,
    error=st.none() | text,
    malformed=st.booleans(),
)
http_obs = st.builds(
    HTTPObservation,
    url=st.just(f"https://{HOST}/"),
    hops=st.lists(hop, min_size=1, max_size=3).map(tuple),
    duration_ms=st.floats(0, 1e5),
)


@st.composite
def samples(draw: st.DrawFn) -> tuple[tuple[float, int], ...]:
    times = sorted(draw(st.lists(st.floats(0, 30_000, allow_nan=False), max_size=12)))
    counts = sorted(draw(st.lists(st.integers(0, 1 << 22), min_size=len(times),
                                  max_size=len(times))))  # fmt: skip
    return tuple(zip(times, counts, strict=True))


throughput_obs = st.builds(
    ThroughputObservation,
    url=st.just(f"https://{HOST}/big.bin"),
    ip=ip,
    sni=st.none() | st.sampled_from([HOST, "www.example.com"]),
    verified=st.booleans(),
    failure=failure,
    operation=st.sampled_from(OPERATIONS),
    status=st.none() | st.sampled_from([200, 206, 404, 500]),
    connect_ms=ms,
    tls_ms=ms,
    first_byte_ms=ms,
    samples=samples(),
    bytes=st.integers(0, 1 << 22),
    duration_ms=st.floats(0, 30_000),
    goodput_kbps=st.none() | st.floats(0, 1e6, allow_nan=False),
    stopped=st.none() | st.sampled_from(["bytes", "seconds", "end"]),
)
helper = st.none() | st.builds(
    HelperReport,
    addresses=st.lists(ip, max_size=2).map(tuple),
    tcp_ok=st.none() | st.booleans(),
    tls_valid=st.none() | st.booleans(),
    status=st.none() | st.integers(100, 599),
    title=st.none() | text,
    body_length=st.none() | st.integers(0, 1 << 20),
    final_host=st.none() | st.sampled_from([HOST, "other.test"]),
)
past = st.builds(
    PastRate,
    measured_at=st.just("2026-11-01T00:00:00Z"),
    kbps=st.floats(0, 1e6, allow_nan=False),
    verdict=st.sampled_from(["accessible", "throttled"]),
    detail=st.sampled_from(["ok", "throttle.ip", "throttle.sni"]),
    address=st.none() | ip,
)


def few(
    strategy: st.SearchStrategy[object], size: int = 3
) -> st.SearchStrategy[tuple[object, ...]]:
    return st.lists(strategy, max_size=size).map(tuple)


evidence = st.builds(
    InputEvidence,
    kind=st.sampled_from(["url", "endpoint"]),
    input=st.sampled_from([f"https://{HOST}/", f"http://{HOST}/a", "93.184.215.14:443"]),
    hostname=st.none() | st.just(HOST),
    scheme=st.sampled_from(["https", "http", None]),
    dns=few(dns_obs),
    tcp=few(tcp_obs),
    tls=few(tls_obs),
    http=few(http_obs),
    not_contacted=st.none() | text,
    deadline_exceeded=st.booleans(),
    throughput=few(throughput_obs, 4),
)
controls = st.builds(
    Controls,
    vantage_ok=st.booleans(),
    doh=few(dns_obs, 2),
    tls_innocuous=few(tls_obs, 2),
    http_innocuous=few(http_obs, 2),
    tls_at_control_addresses=few(tls_obs, 2),
    http_at_control_addresses=few(http_obs, 2),
    dns_nonexistent=few(dns_obs, 2),
    helper=helper,
    throughput_innocuous=few(throughput_obs, 4),
    throughput_reference=few(throughput_obs, 4),
    throughput_helper=few(throughput_obs, 4),
    throughput_history=few(past, 4),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(evidence, controls)
def test_classify_is_total(ev: InputEvidence, ctl: Controls) -> None:
    got = classify(ev, ctl, FP)
    assert got.verdict in ("accessible", "blocked", "throttled", "inconclusive")
    assert got.detail in DETAILS
    assert got.reason.strip()
    if got.verdict == "blocked":
        assert got.layer is not None


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(evidence)
def test_no_control_no_blocked_from_failures(ev: InputEvidence) -> None:
    # Without any control, only evidence that stands by itself may say "blocked": a forged
    # second DNS answer, a fingerprinted blockpage, a known interception root. A failure alone
    # never does: every failed observation with no control at all is not blocked.
    only_failures = InputEvidence(
        ev.kind, ev.input, ev.hostname, ev.scheme,
        tcp=tuple(o for o in ev.tcp if o.failure is not None),
        tls=tuple(o for o in ev.tls if o.failure is not None and not o.chain),
        http=tuple(
            HTTPObservation(o.url, tuple(h for h in o.hops if h.failure is not None), 1.0)
            for o in ev.http
            if o.hops and all(h.failure is not None for h in o.hops)
        ),
    )  # fmt: skip
    assert classify(only_failures, Controls(), FP).verdict != "blocked"


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(evidence, controls, helper)
def test_the_helper_is_asked_whenever_its_report_could_change_the_verdict(
    ev: InputEvidence, ctl: Controls, report: HelperReport | None
) -> None:
    # The engine asks the helper only when helper_decides says so: where it says no, no
    # report (or none) may change what the rules conclude, or the two would disagree.
    # Past DNS and the safety check, where the helper's report is read at all.
    ev = dataclasses.replace(ev, dns=(), not_contacted=None)
    ctl = dataclasses.replace(ctl, vantage_ok=True)
    if helper_decides(ev):
        return
    without = classify(ev, dataclasses.replace(ctl, helper=None), FP)
    with_report = classify(ev, dataclasses.replace(ctl, helper=report), FP)
    assert (with_report.verdict, with_report.layer, with_report.detail) == (
        without.verdict, without.layer, without.detail,
    )  # fmt: skip
