"""What the classifier is given: the observations of one input and the controls around it."""

from __future__ import annotations

from dataclasses import dataclass

from measurements.observations import (
    DNSObservation,
    HTTPObservation,
    TCPObservation,
    ThroughputObservation,
    TLSObservation,
)


@dataclass(frozen=True, slots=True)
class HelperReport:
    """The control helper's view of one input from an uncensored network (a later issue).

    The seam is here so the classifier's rules can already use it; without a helper every
    field is absent and the rules that need it answer inconclusive.
    """

    addresses: tuple[str, ...] = ()
    tcp_ok: bool | None = None  # the helper connected to the probe's address
    tls_valid: bool | None = None  # the helper saw a chain that validates for the name
    status: int | None = None
    title: str | None = None
    body_length: int | None = None
    final_host: str | None = None  # where the helper's redirects ended
    # When the helper had the first answer's headers, ms after it sent the request: whether
    # its answer was prompt where the probe's timed out (like with like, rule 6).
    first_byte_ms: float | None = None


@dataclass(frozen=True, slots=True)
class PastRate:
    """An earlier throughput test of the same input at the same vantage (rule 7's history)."""

    measured_at: str  # ISO-8601 UTC
    kbps: float  # the target's rate then
    verdict: str
    detail: str
    address: str | None = None  # where it was timed (a CDN may have moved the input since)


@dataclass(frozen=True, slots=True)
class ReferenceTLS:
    """What one HTTPS reference host presented in the sweep's vantage check (rule 2).

    A commercial interceptor (antivirus, a company's proxy) forges every site's chain, the
    references' too; one seen on the target alone was aimed at it (rule 5).
    """

    url: str
    issuer: str | None  # the leaf's issuer; None when no chain was presented
    interception: str | None = None  # the known interception CA its chain shows (its name)


@dataclass(frozen=True, slots=True)
class InputEvidence:
    """Every observation made for one input, every attempt kept (retries included)."""

    kind: str  # "url" or "endpoint"
    input: str
    hostname: str | None  # None when the input names an IP
    scheme: str | None  # "https", "http", or None for a bare endpoint
    dns: tuple[DNSObservation, ...] = ()  # the resolver under test, each attempt
    tcp: tuple[TCPObservation, ...] = ()  # bare endpoints, each attempt
    tls: tuple[TLSObservation, ...] = ()  # target SNI, each attempt
    http: tuple[HTTPObservation, ...] = ()  # each attempt
    not_contacted: str | None = None  # why the probe refused to contact the target
    deadline_exceeded: bool = False
    throughput: tuple[ThroughputObservation, ...] = ()  # the target's trials (rule 7), if run
    # The SNI replay: transfers to the control helper's replay listener naming the hostname,
    # both directions (probe.classify.replay).
    replay: tuple[ThroughputObservation, ...] = ()
    # The hops after the first at which a redirect chain failed, each measured as an input
    # of its own (docs/architecture.md, "Redirect hops"), in chain order: each one's URL is
    # a hop of the chain of the one before it (the first: of this input's chain).
    hops: tuple[HopEvidence, ...] = ()


@dataclass(frozen=True, slots=True)
class Controls:
    """What the controls saw for this input (each empty when not needed or not available)."""

    vantage_ok: bool = True  # a reference host answered before the sweep
    doh: tuple[DNSObservation, ...] = ()  # DNS-over-HTTPS answers for the hostname
    tls_innocuous: tuple[TLSObservation, ...] = ()  # same address, innocuous SNI
    http_innocuous: tuple[HTTPObservation, ...] = ()  # same address, innocuous Host
    tls_at_control_addresses: tuple[TLSObservation, ...] = ()  # target SNI at DoH's address
    http_at_control_addresses: tuple[HTTPObservation, ...] = ()  # plain HTTP at DoH's address
    # The resolver under test asked for a name made up to exist nowhere (for a ghost name):
    # a resolver that answers every missing name is not singling one out.
    dns_nonexistent: tuple[DNSObservation, ...] = ()
    helper: HelperReport | None = None
    # The chains the vantage check's HTTPS reference hosts presented in this sweep: whether
    # an interception CA seen here is on every host (local to the machine or network).
    reference_tls: tuple[ReferenceTLS, ...] = ()
    # Why the helper gave no report when it was asked (refused, unreachable, a bad answer):
    # a control that was missing is evidence too.
    helper_problem: str | None = None
    # Rule 7's controls, interleaved with the target's trials: the same address and resource
    # with an innocuous SNI (certificate unchecked), and a reference host.
    throughput_innocuous: tuple[ThroughputObservation, ...] = ()
    throughput_reference: tuple[ThroughputObservation, ...] = ()
    # What rule 7 needs to tell an address slowed on the way here from a server slow for
    # everyone: the same resource and address timed by the control helper (uncensored), and
    # earlier tests of this input at this vantage (newest first).
    throughput_helper: tuple[ThroughputObservation, ...] = ()
    throughput_helper_problem: str | None = None  # why the helper timed nothing, if asked
    throughput_history: tuple[PastRate, ...] = ()
    # The SNI replay's control: the same transfers naming an innocuous host, interleaved.
    replay_innocuous: tuple[ThroughputObservation, ...] = ()
    replay_problem: str | None = None  # why no replay was timed, when one was wanted
    # The name had only the screening pass: ``replay`` holds its one transfer each way and
    # ``replay_innocuous`` the sweep's baseline (probe.classify.replay).
    replay_screened: bool = False


@dataclass(frozen=True, slots=True)
class HopEvidence:
    """A later hop of a redirect chain, measured as an input of its own, and its controls."""

    number: int  # its place in the input's chain: 2 for the first redirect's target
    url: str
    chain: tuple[str, ...]  # the input's chain up to this hop, this hop's URL last
    evidence: InputEvidence  # its own observations (with no hops of its own)
    controls: Controls
