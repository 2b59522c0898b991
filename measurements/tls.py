"""TLS handshakes to an explicit address with a chosen SNI, and the chain the peer presented.

One TCP connection, one handshake. OpenSSL validates the chain during the handshake (so a
verdict matches what the volunteer's browser would say) and the chain is read from the same
handshake whether or not it validated: an interceptor's forged chain is the evidence, so a
failed check must still yield it. Where that happened:

    handshake()
     ├── connect fails ................. failure, operation="connect"
     ├── handshake fails ............... failure, operation="tls_handshake"
     │     reset -> connection_reset, silence -> generic_timeout_error,
     │     clean close -> eof_error, alert -> ssl_failed_handshake
     └── handshake completes ........... failure=None, chain, version, alpn
           certificate verdict apart: cert_valid True/False (+ cert_failure), or None unchecked

The handshake is driven by hand through an ssl.SSLObject over memory BIOs and asyncio's
non-blocking socket calls (what asyncio's own SSL transport does inside). Unlike
loop.create_connection(ssl=...), which drops the SSL object when verification fails, this keeps
the object, so OpenSSL's copy of the peer chain can be read after a failed verification
instead of connecting a second time with the target's SNI through the censor.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from measurements.certificates import pem, summarize
from measurements.failures import Failure, describe, failure_of
from measurements.observations import Certificate, TLSObservation
from measurements.tcp import address_family, open_socket
from measurements.trust import DEFAULT_ALPN, context_async

_READ_SIZE = 65536


def _ms(since: float) -> float:
    """Milliseconds elapsed on the monotonic clock since ``since``."""
    return (time.monotonic() - since) * 1000.0


async def _flush(sock: socket.socket, outgoing: ssl.MemoryBIO) -> None:
    """Send whatever OpenSSL has queued for the peer."""
    data = outgoing.read()
    if data:
        await asyncio.get_running_loop().sock_sendall(sock, data)


async def _drive_handshake(
    sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO
) -> None:
    """Run the handshake to completion; raises what OpenSSL or the socket raised."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass  # awaited below, outside the handler, so no failure carries it as context
        except ssl.SSLError:
            # Send the alert OpenSSL queued (a browser does too); the peer may be gone already.
            with contextlib.suppress(OSError):
                await _flush(sock, outgoing)
            raise
        else:
            # TLS 1.3: the client's Finished is still queued; without it the server sees a
            # truncated handshake.
            await _flush(sock, outgoing)
            return
        await _flush(sock, outgoing)
        data = await loop.sock_recv(sock, _READ_SIZE)
        if data:
            incoming.write(data)
        else:
            incoming.write_eof()  # the next do_handshake raises SSLEOFError


async def _close_politely(sock: socket.socket, tls: ssl.SSLObject, outgoing: ssl.MemoryBIO) -> None:
    """Send close_notify so the server logs a finished session rather than a truncation."""
    with contextlib.suppress(ssl.SSLWantReadError):  # the peer's close_notify is not awaited
        tls.unwrap()
    await _flush(sock, outgoing)


def _der(cert: Any) -> bytes:
    """DER bytes of a chain element: bytes (3.13's public API) or an _ssl.Certificate (3.10+)."""
    if isinstance(cert, bytes):
        return cert
    return bytes(cert.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]


def _summary(der: bytes) -> Certificate:
    """The summary of one certificate, or a placeholder keeping its place and fingerprint.

    OpenSSL accepts some certificates cryptography will not parse (a negative serial, say);
    dropping one would make the chain look shorter than what the peer sent.
    """
    try:
        return summarize(der)
    except ValueError:
        return Certificate(
            subject="(unparsed)",
            issuer="(unparsed)",
            sans=(),
            not_before="",
            not_after="",
            sha256=hashlib.sha256(der).hexdigest(),
            pem=pem(der),
        )


def _peer_chain(tls: ssl.SSLObject) -> tuple[Certificate, ...] | None:
    """The chain as the peer sent it, leaf first; None when this Python cannot read it."""
    getter = getattr(tls, "get_unverified_chain", None)  # public from Python 3.13
    if getter is None:
        # Private in 3.10-3.12 (_ssl._SSLSocket.get_unverified_chain); there is no other way to
        # reach past the leaf, and it also answers after a failed verification.
        getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if getter is not None:
        certs: Sequence[Any] | None = getter()
        return tuple(_summary(_der(c)) for c in certs or ())
    try:
        leaf = tls.getpeercert(binary_form=True)
    except ValueError:  # handshake not done: nothing to read without the private call
        return None
    return (_summary(leaf),) if leaf else ()


def _name_matches(name: str, sans: Sequence[str]) -> bool:
    """RFC 6125 matching of a name against subjectAltNames: exact, or one leftmost wildcard."""
    try:
        wanted_ip = ipaddress.ip_address(name)
    except ValueError:
        wanted_ip = None
    host = name.rstrip(".").lower()
    for san in sans:
        try:
            san_ip = ipaddress.ip_address(san)
        except ValueError:
            san_ip = None
        if wanted_ip is not None or san_ip is not None:
            if san_ip is not None and san_ip == wanted_ip:
                return True
            continue  # an address matches an address only, never a name or pattern
        pattern = san.rstrip(".").lower()
        if pattern == host:
            return True
        if pattern.startswith("*.") and "." in host:
            label, rest = host.split(".", 1)
            if label and rest == pattern[2:] and "*" not in rest:
                return True
    return False


async def _attempt(
    ip: str,
    port: int,
    sni: str | None,
    ctx: ssl.SSLContext,
    timeout: float,  # noqa: ASYNC109
) -> tuple[ssl.SSLObject, BaseException | None, dict[str, float | None]]:
    """One connection and handshake; the SSL object, what it raised, and its timings."""
    timings: dict[str, float | None] = {"connect_ms": None, "handshake_ms": None}
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_side=False, server_hostname=sni)
    sock: socket.socket | None = None
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            sock = await open_socket(ip, port)
        timings["connect_ms"] = _ms(started)
        shaking = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await _drive_handshake(sock, tls, incoming, outgoing)
        finally:
            timings["handshake_ms"] = _ms(shaking)
    except Exception as exc:  # network trouble is data; CancelledError still propagates
        return tls, exc, timings
    else:
        # The measurement is done; a peer that will not take close_notify changes nothing.
        with contextlib.suppress(OSError):  # TimeoutError included
            async with asyncio.timeout(min(timeout, 1.0)):
                await _close_politely(sock, tls, outgoing)
        return tls, None, timings
    finally:
        if sock is not None:
            sock.close()


async def handshake(
    ip: str,
    port: int,
    sni: str | None,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 (see measurements.tcp.connect)
    ca_bundle: str | None = None,
    verify_name: str | None = None,
    check_certificate: bool = True,
    alpn: tuple[str, ...] = DEFAULT_ALPN,
) -> TLSObservation:
    """Connect to ip:port, handshake with ``sni`` (None: no SNI), and record what the peer showed.

    ``timeout`` bounds the connect and the handshake each. With ``check_certificate`` the chain
    is validated against ``ca_bundle`` (None: the system's store) and the name
    ``verify_name or sni`` (no name: the chain alone); the verdict is cert_valid/cert_failure,
    apart from ``failure``. Without it (the innocuous-SNI control) cert_valid stays None.
    """
    address_family(ip)  # a hostname is the caller's bug: fail loudly before any traffic
    name = verify_name if verify_name is not None else sni
    # Python's ssl ties the checked name to server_hostname (the SNI), so OpenSSL checks the
    # name only when it is the SNI; otherwise it validates the chain and the name is matched
    # against the leaf's SANs below.
    openssl_checks_name = check_certificate and name is not None and name == sni
    # Built before any traffic and outside the failure handling: a missing CA bundle is a
    # configuration error, not a network failure.
    ctx = await context_async(
        ca_bundle, verify=check_certificate, check_hostname=openssl_checks_name, alpn=alpn
    )

    started = time.monotonic()
    tls, exc, timings = await _attempt(ip, port, sni, ctx, timeout)
    cert_valid, cert_failure, exc = _certificate_verdict(exc, check_certificate)
    broken = _broken(exc, timings) if exc is not None else None
    shown = _Shown() if exc is not None else await _shown(tls, ip, port, sni, alpn, timeout)
    if cert_valid is True and name is not None and not openssl_checks_name:
        if not shown.chain or not _name_matches(name, shown.chain[0].sans):
            cert_valid, cert_failure = False, str(Failure.SSL_INVALID_HOSTNAME)
    return TLSObservation(
        ip=ip,
        port=port,
        sni=sni,
        failure=broken.failure if broken is not None else None,
        operation=broken.operation if broken is not None else None,
        connect_ms=timings["connect_ms"],
        handshake_ms=timings["handshake_ms"],
        version=shown.version,
        alpn=shown.alpn,
        chain=shown.chain,
        cert_valid=cert_valid,
        cert_failure=cert_failure,
        duration_ms=_ms(started),
        error=broken.error if broken is not None else None,
    )


def _certificate_verdict(
    exc: BaseException | None, check_certificate: bool
) -> tuple[bool | None, str | None, BaseException | None]:
    """cert_valid and cert_failure from the attempt, and what is left of its failure."""
    if check_certificate and isinstance(exc, ssl.SSLCertVerificationError):
        # The handshake worked up to OpenSSL's verdict on the certificate: that verdict is
        # cert_failure, and the handshake itself is not a failure.
        return False, str(failure_of(exc)), None
    if check_certificate and exc is None:
        return True, None, None
    return None, None, exc


@dataclass(frozen=True, slots=True)
class _Broken:
    """How a connection or handshake failed, and in which of the two."""

    failure: str
    operation: str
    error: str | None  # the exception's description, for a failure of no known kind


def _broken(exc: BaseException, timings: dict[str, float | None]) -> _Broken:
    """The failure of the attempt; it was in the handshake if the connection was made."""
    found = failure_of(exc)
    return _Broken(
        failure=str(found),
        operation="connect" if timings["connect_ms"] is None else "tls_handshake",
        error=describe(exc) if found is Failure.UNKNOWN else None,
    )


@dataclass(frozen=True, slots=True)
class _Shown:
    """What a completed handshake showed: the peer's chain, the version, the ALPN protocol."""

    chain: tuple[Certificate, ...] = ()
    version: str | None = None
    alpn: str | None = None


async def _shown(
    tls: ssl.SSLObject,
    ip: str,
    port: int,
    sni: str | None,
    alpn: tuple[str, ...],
    timeout: float,  # noqa: ASYNC109
) -> _Shown:
    """What the completed handshake ``tls`` showed, its chain read again if need be."""
    read = _peer_chain(tls)
    if read is None:
        # No way to read a chain that failed verification on this Python: look again with
        # verification off. An extra ClientHello with the same SNI; if it fails, no chain.
        retry, retry_exc, _ = await _attempt(
            ip,
            port,
            sni,
            await context_async(None, verify=False, alpn=alpn),
            timeout,
        )
        read = _peer_chain(retry) if retry_exc is None else None
    # None after a failed verification: Python reports them only for a finished handshake.
    return _Shown(read or (), tls.version(), tls.selected_alpn_protocol())
