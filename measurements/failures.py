"""The closed failure vocabulary, and the one place that maps exceptions to it.

Names follow the established measurement data format so results compare with others'.
Mapping walks the exception and its causes (httpx and httpcore re-raise with ``from exc``)
and takes the most specific match:

    BaseException
     ├── ssl.SSLCertVerificationError ... by verify code:
     │     hostname mismatch            -> ssl_invalid_hostname
     │     unknown / self-signed issuer -> ssl_unknown_authority
     │     anything else (expired, ...) -> ssl_invalid_certificate
     ├── ssl.SSLZeroReturnError, ssl.SSLEOFError, EOFError ............. eof_error
     ├── ssl.SSLError ............................................ ssl_failed_handshake
     ├── ConnectionRefusedError .................................. connection_refused
     ├── ConnectionResetError, BrokenPipeError, ConnectionAbortedError -> connection_reset
     ├── TimeoutError (asyncio's too), httpx.TimeoutException,
     │   dns.exception.Timeout ................................... generic_timeout_error
     ├── OSError by errno (EHOSTUNREACH, ENETUNREACH, ...)
     ├── socket.gaierror by EAI code ............................. dns_*
     ├── dns.resolver.NXDOMAIN / NoAnswer / NoNameservers ........ dns_*
     ├── httpx.RemoteProtocolError, the peer closed early ........ eof_error
     ├── httpx.RemoteProtocolError, anything else (garbage, an endless header, 100,000
     │   headers) ............................ unknown_failure, and ``malformed`` is true
     └── anything else ........................................... unknown_failure

A malformed answer is the server's doing as often as a censor's (docs/architecture.md,
rule 6): it must not read as a connection cut (``eof_error``), which the classifier may call
blocking.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
import sys
from enum import StrEnum

import dns.exception
import dns.rcode


class Failure(StrEnum):
    """One member of the closed failure vocabulary (docs/architecture.md)."""

    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_RESET = "connection_reset"
    GENERIC_TIMEOUT = "generic_timeout_error"
    EOF = "eof_error"
    HOST_UNREACHABLE = "host_unreachable"
    NETWORK_UNREACHABLE = "network_unreachable"
    DNS_NXDOMAIN = "dns_nxdomain_error"
    DNS_SERVFAIL = "dns_servfail_error"
    DNS_REFUSED = "dns_refused_error"
    DNS_NO_ANSWER = "dns_no_answer"
    DNS_BOGON = "dns_bogon_error"
    SSL_INVALID_HOSTNAME = "ssl_invalid_hostname"
    SSL_UNKNOWN_AUTHORITY = "ssl_unknown_authority"
    SSL_INVALID_CERTIFICATE = "ssl_invalid_certificate"
    SSL_FAILED_HANDSHAKE = "ssl_failed_handshake"
    UNKNOWN = "unknown_failure"


# OpenSSL X509_V_ERR_* codes that mean "I do not know who signed this".
_UNKNOWN_AUTHORITY_CODES = frozenset({2, 18, 19, 20, 21})
_HOSTNAME_MISMATCH_CODES = frozenset({62, 64})

_ERRNO = {
    errno.ECONNREFUSED: Failure.CONNECTION_REFUSED,
    errno.ECONNRESET: Failure.CONNECTION_RESET,
    errno.ECONNABORTED: Failure.CONNECTION_RESET,
    errno.EPIPE: Failure.CONNECTION_RESET,
    errno.ETIMEDOUT: Failure.GENERIC_TIMEOUT,
    errno.EHOSTUNREACH: Failure.HOST_UNREACHABLE,
    errno.EHOSTDOWN: Failure.HOST_UNREACHABLE,
    errno.ENETUNREACH: Failure.NETWORK_UNREACHABLE,
    errno.ENETDOWN: Failure.NETWORK_UNREACHABLE,
}

_GAI: dict[int, Failure] = {
    socket.EAI_NONAME: Failure.DNS_NXDOMAIN,
    socket.EAI_AGAIN: Failure.DNS_SERVFAIL,
    socket.EAI_FAIL: Failure.DNS_SERVFAIL,
}
if hasattr(socket, "EAI_NODATA"):
    _GAI[socket.EAI_NODATA] = Failure.DNS_NO_ANSWER

_RCODE: dict[int, Failure] = {
    dns.rcode.NXDOMAIN: Failure.DNS_NXDOMAIN,
    dns.rcode.SERVFAIL: Failure.DNS_SERVFAIL,
    dns.rcode.REFUSED: Failure.DNS_REFUSED,
}


def failure_for_rcode(rcode: int) -> Failure | None:
    """The failure a DNS response code stands for; None for NOERROR."""
    if rcode == dns.rcode.NOERROR:
        return None
    return _RCODE.get(rcode, Failure.UNKNOWN)


def _http_kinds(exc: BaseException) -> set[str]:
    """Class names of an httpx or httpcore exception, from its own class up."""
    return {
        cls.__name__
        for cls in type(exc).__mro__
        if cls.__module__.split(".")[0] in ("httpx", "httpcore")
    }


def _map_one(exc: BaseException) -> Failure | None:
    """Map a single exception (not its causes); None when it says nothing specific."""
    if isinstance(exc, ssl.SSLWantReadError | ssl.SSLWantWriteError):
        # Flow control, not a failure: a TLS read cancelled by a timeout carries one as context.
        return None
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code in _HOSTNAME_MISMATCH_CODES:
            return Failure.SSL_INVALID_HOSTNAME
        if code in _UNKNOWN_AUTHORITY_CODES:
            return Failure.SSL_UNKNOWN_AUTHORITY
        return Failure.SSL_INVALID_CERTIFICATE
    if isinstance(exc, ssl.SSLZeroReturnError | ssl.SSLEOFError | EOFError):
        return Failure.EOF  # EOFError covers asyncio.IncompleteReadError and dnspython's reads
    if isinstance(exc, ssl.SSLError):
        return Failure.SSL_FAILED_HANDSHAKE
    if isinstance(exc, socket.gaierror):
        return _GAI.get(exc.errno or 0, Failure.UNKNOWN)
    if isinstance(exc, ConnectionRefusedError):
        return Failure.CONNECTION_REFUSED
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return Failure.CONNECTION_RESET
    if isinstance(exc, TimeoutError | dns.exception.Timeout) or "TimeoutException" in _http_kinds(
        exc
    ):
        return Failure.GENERIC_TIMEOUT
    if isinstance(exc, OSError) and exc.errno in _ERRNO:
        return _ERRNO[exc.errno]
    # dnspython's resolver (about 1 MB and 40 ms to import) is not what the probe queries
    # with; its exceptions can only exist once something else has imported it.
    resolver = sys.modules.get("dns.resolver")
    if resolver is not None:
        if isinstance(exc, resolver.NXDOMAIN):
            return Failure.DNS_NXDOMAIN
        if isinstance(exc, resolver.NoAnswer):
            return Failure.DNS_NO_ANSWER
        if isinstance(exc, resolver.NoNameservers):
            return Failure.DNS_SERVFAIL
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes, outermost first (each once, should they loop)."""
    seen: set[int] = set()
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def failure_of(exc: BaseException) -> Failure:
    """The most specific failure for an exception, looking through its causes."""
    chain = _chain(exc)
    # The innermost cause is the most specific (an OSError under an httpx.ConnectError).
    for item in reversed(chain):
        found = _map_one(item)
        if found is not None:
            return found
    if any(_closed_early(item) for item in chain):
        # "Server disconnected without sending a response": the peer closed the stream.
        return Failure.EOF
    return Failure.UNKNOWN


# How httpcore and h11 word a peer that closed the stream, as opposed to one that sent bytes
# that are not HTTP: the only RemoteProtocolErrors that are a cut rather than a bad answer.
_CLOSED_EARLY = ("disconnected without sending", "peer closed connection")


def _closed_early(exc: BaseException) -> bool:
    return "RemoteProtocolError" in _http_kinds(exc) and any(
        text in str(exc) for text in _CLOSED_EARLY
    )


def malformed(exc: BaseException) -> bool:
    """True when the peer answered with something that is not well-formed HTTP."""
    chain = _chain(exc)
    return any("RemoteProtocolError" in _http_kinds(item) for item in chain) and not any(
        _closed_early(item) for item in chain
    )


_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(r"\b(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}\b")


def scrub(text: str) -> str:
    """An error message with every IP address removed (it may be the volunteer's own)."""
    return _IPV6.sub("[scrubbed]", _IPV4.sub("[scrubbed]", text))


def describe(exc: BaseException) -> str:
    """A short scrubbed description of an exception, kept beside an unknown_failure."""
    return scrub(f"{type(exc).__name__}: {exc}")[:300]
