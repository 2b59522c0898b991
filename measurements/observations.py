"""Frozen observations: what each network primitive saw, and nothing it concluded.

Every primitive returns one of these; network failures are a ``failure`` string from
measurements.failures, never an exception. Times are milliseconds from a monotonic clock,
measured from the start of the primitive's own operation.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class DNSResponse:
    """One response that arrived for a query (an injected one, the genuine one, ...)."""

    rcode: str  # "NOERROR", "NXDOMAIN", ...
    addresses: tuple[str, ...]
    cnames: tuple[str, ...]
    ttl: int | None
    received_ms: float  # since the query was sent


@dataclass(frozen=True, slots=True)
class DNSObservation:
    """A name resolved through one resolver over one transport."""

    hostname: str
    qtype: str  # "A", "AAAA"
    transport: str  # "udp", "tcp", "system", "doh"
    resolver: str  # "ip:port", "system", or the DoH URL
    failure: str | None
    rcode: str | None  # of the first response
    addresses: tuple[str, ...]  # of the first response
    responses: tuple[DNSResponse, ...]  # every response within the window after the first
    duration_ms: float
    error: str | None = None  # scrubbed description, kept only for unknown_failure


@dataclass(frozen=True, slots=True)
class TCPObservation:
    """A TCP connect to one address."""

    ip: str
    port: int
    failure: str | None
    connect_ms: float | None  # None when it did not connect
    duration_ms: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Certificate:
    """What a reader needs to recognise a certificate and re-check a verdict on it."""

    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_before: str  # ISO-8601 UTC
    not_after: str
    sha256: str  # of the DER encoding, hex
    # Of the DER SubjectPublicKeyInfo, hex: a CA's key outlives each certificate made for it,
    # so an interception root is known by its key too.
    spki_sha256: str = ""
    # The certificate itself, for the verdicts that must show it (tls.mitm's chain_pem). Not
    # kept in stored observations (to_jsonable skips it): the fingerprints above identify a
    # certificate, and 1-2 KiB per certificate per attempt would weigh on every input.
    pem: str = field(default="", compare=False, repr=False, metadata={"stored": False})


@dataclass(frozen=True, slots=True)
class TLSObservation:
    """A TLS handshake to one address with a chosen SNI; the chain is kept even if invalid."""

    ip: str
    port: int
    sni: str | None
    failure: str | None  # of connect or handshake; certificate problems are not here
    operation: str | None  # "connect" or "tls_handshake": where failure happened
    connect_ms: float | None
    handshake_ms: float | None
    version: str | None  # "TLSv1.3"
    alpn: str | None
    chain: tuple[Certificate, ...]  # leaf first, as the peer sent it
    cert_valid: bool | None  # None: not checked (handshake failed or check disabled)
    cert_failure: str | None  # ssl_unknown_authority, ssl_invalid_hostname, ...
    duration_ms: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HTTPTimings:
    """Phase timings from httpcore's trace hooks, from the start of the request."""

    connect_ms: float | None = None
    tls_ms: float | None = None  # TLS handshake duration
    first_byte_ms: float | None = None  # response headers received
    total_ms: float | None = None  # body read (or failure)


@dataclass(frozen=True, slots=True)
class HTTPHop:
    """One request of a redirect chain and what came back."""

    url: str
    ip: str | None  # the address the request was sent to
    failure: str | None
    operation: str | None  # "connect", "tls_handshake", "http_request", "http_body"
    status: int | None
    headers: tuple[tuple[str, str], ...]
    location: str | None  # the redirect target, absolute
    title: str | None
    body_length: int | None  # bytes read (capped)
    body_sha256: str | None
    body_head: bytes  # first 8 KiB
    truncated: bool  # the body was longer than the read cap
    tls_version: str | None
    certificate: Certificate | None  # the leaf, when HTTPS
    timings: HTTPTimings
    refused: str | None = None  # why the hop was not contacted (not routable, no address...)
    error: str | None = None
    malformed: bool = False  # the answer was not well-formed HTTP (failures.malformed)


@dataclass(frozen=True, slots=True)
class HTTPObservation:
    """A GET and the redirects it led to, hop by hop."""

    url: str
    hops: tuple[HTTPHop, ...]
    duration_ms: float

    @property
    def final(self) -> HTTPHop:
        """The last hop (the page, or where it stopped)."""
        return self.hops[-1]

    @property
    def failure(self) -> str | None:
        """The failure of the last hop, if any."""
        return self.hops[-1].failure if self.hops else None


@dataclass(frozen=True, slots=True)
class ThroughputObservation:
    """One timed download from a chosen address: how fast the body came, sampled over time.

    ``samples`` are (ms since the request started, body bytes received so far), taken every
    sampling interval from the response headers on, and once more at the end. ``goodput_kbps``
    is body kilobits per second from the response headers to the end of the read, so that
    connect, TLS and server think time do not count against the path's rate.
    """

    url: str
    ip: str
    sni: str | None  # what the ClientHello carried (None for plain HTTP)
    verified: bool  # False: the certificate was not checked (the innocuous-SNI control)
    failure: str | None
    operation: str | None  # "connect", "tls_handshake", "http_request", "http_body"
    status: int | None
    connect_ms: float | None  # TCP connect duration: about one round trip
    tls_ms: float | None  # TLS handshake duration
    first_byte_ms: float | None  # response headers received, since the request started
    samples: tuple[tuple[float, int], ...]
    bytes: int  # body bytes read
    duration_ms: float
    goodput_kbps: float | None  # None without at least one body byte
    stopped: str | None = None  # why the read ended: "bytes", "seconds" or "end" (of the body)
    error: str | None = None
    # "down" (the probe reads), or "up": the probe sends to the helper's replay listener and
    # the samples and first byte are the receiver's (measurements.replay).
    direction: str = "down"


Observation = (
    DNSObservation | TCPObservation | TLSObservation | HTTPObservation | ThroughputObservation
)


# The stored fields of each dataclass, looked up once per class: every record of a sweep is
# turned into JSON, thousands of nodes each, and dataclasses.fields() per node was most of it.
_STORED: dict[type, tuple[str, ...]] = {}


def _stored_fields(cls: type) -> tuple[str, ...]:
    names = _STORED.get(cls)
    if names is None:
        fields = dataclasses.fields(cls)
        names = _STORED[cls] = tuple(f.name for f in fields if f.metadata.get("stored", True))
    return names


def to_jsonable(value: Any) -> Any:
    """Plain JSON types for an observation tree; bytes become base64 text.

    A field whose metadata says ``stored: False`` (Certificate.pem) is left out.
    """
    if value is None or isinstance(value, str | int | float):
        return value  # the most common nodes first (a StrEnum too, as it is)
    cls = type(value)
    if cls in _STORED or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        out = {name: to_jsonable(getattr(value, name)) for name in _stored_fields(cls)}
        out["kind"] = cls.__name__
        return out
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value
