"""The one exception-to-failure map, as a table (pure: exceptions are built, not provoked)."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import dns.exception
import dns.rcode
import dns.resolver
import httpx
import pytest

from measurements.failures import Failure, describe, failure_for_rcode, failure_of, scrub


def _cert_error(code: int) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError("certificate verify failed")
    exc.verify_code = code
    return exc


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


CASES = [
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "connection_refused"),
    (ConnectionResetError(errno.ECONNRESET, "reset"), "connection_reset"),
    (BrokenPipeError(errno.EPIPE, "pipe"), "connection_reset"),
    (TimeoutError(), "generic_timeout_error"),
    (dns.exception.Timeout(), "generic_timeout_error"),
    (httpx.ReadTimeout("slow"), "generic_timeout_error"),
    (OSError(errno.EHOSTUNREACH, "no route"), "host_unreachable"),
    (OSError(errno.ENETUNREACH, "unreachable"), "network_unreachable"),
    (asyncio.IncompleteReadError(b"", 5), "eof_error"),
    (ssl.SSLEOFError(), "eof_error"),
    (ssl.SSLError(1, "alert handshake failure"), "ssl_failed_handshake"),
    (_cert_error(62), "ssl_invalid_hostname"),
    (_cert_error(20), "ssl_unknown_authority"),
    (_cert_error(19), "ssl_unknown_authority"),
    (_cert_error(10), "ssl_invalid_certificate"),
    (socket.gaierror(socket.EAI_NONAME, "unknown"), "dns_nxdomain_error"),
    (socket.gaierror(socket.EAI_AGAIN, "again"), "dns_servfail_error"),
    (dns.resolver.NXDOMAIN(), "dns_nxdomain_error"),
    (ValueError("something new"), "unknown_failure"),
    # The innermost cause is the most specific: httpx wraps what the socket said.
    (_chained(httpx.ConnectError("x"), ConnectionRefusedError(errno.ECONNREFUSED, "r")), "connection_refused"),
    (_chained(httpx.ReadError("x"), ConnectionResetError(errno.ECONNRESET, "r")), "connection_reset"),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), "eof_error"),
    # A read cancelled by a timeout carries SSLWantReadError as context: still a timeout.
    (_chained(TimeoutError(), ssl.SSLWantReadError()), "generic_timeout_error"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "expected"), CASES, ids=[f"{type(e).__name__}-{x}" for e, x in CASES]
)
def test_failure_of(exc: BaseException, expected: str) -> None:
    assert failure_of(exc) == expected


def test_every_mapped_failure_is_in_the_vocabulary() -> None:
    assert {x for _, x in CASES} <= {f.value for f in Failure}


def test_rcodes() -> None:
    assert failure_for_rcode(dns.rcode.NOERROR) is None
    assert failure_for_rcode(dns.rcode.NXDOMAIN) == "dns_nxdomain_error"
    assert failure_for_rcode(dns.rcode.SERVFAIL) == "dns_servfail_error"
    assert failure_for_rcode(dns.rcode.REFUSED) == "dns_refused_error"
    assert failure_for_rcode(dns.rcode.FORMERR) == "unknown_failure"


def test_unknown_errors_are_scrubbed_of_addresses() -> None:
    text = describe(OSError("cannot bind 192.0.2.44:5353 or [2001:db8::1]:53"))
    assert "192.0.2.44" not in text and "2001:db8::1" not in text
    assert scrub("from 10.0.0.7") == "from [scrubbed]"
