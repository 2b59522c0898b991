"""TCP connects to an explicit address: did the three-way handshake complete, and how fast.

The address is always an IP literal the caller chose (from its own DNS observation), so
resolution time never leaks into connect time and no name is ever looked up here. A connect
that cannot complete comes back as a failure string (measurements.failures), never as an
exception; the only exception is ValueError for a caller that passed a hostname.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

from measurements.failures import Failure, describe, failure_of
from measurements.observations import TCPObservation


def _ms(since: float) -> float:
    """Milliseconds elapsed on the monotonic clock since ``since``."""
    return (time.monotonic() - since) * 1000.0


def address_family(ip: str) -> socket.AddressFamily:
    """The socket family for an IP literal; ValueError for anything else (a hostname)."""
    version = ipaddress.ip_address(ip).version
    return socket.AF_INET6 if version == 6 else socket.AF_INET


async def open_socket(ip: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket to ip:port; raises OSError, the caller bounds the wait.

    The socket is created and connected by hand (not asyncio.open_connection) so that nothing
    can ever send the address to a resolver; the socket is closed if the connect fails or is
    cancelled.
    """
    family = address_family(ip)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        # Small requests and handshakes: do not let Nagle hold a ClientHello back.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.get_running_loop().sock_connect(sock, (ip, port))
    except BaseException:
        sock.close()
        raise
    return sock


# Primitives take explicit timeouts and return failures as data (docs/architecture.md,
# Measurements), so the timeout is a parameter here rather than a caller's asyncio.timeout
# (which would raise instead).
async def connect(ip: str, port: int, *, timeout: float = 5.0) -> TCPObservation:  # noqa: ASYNC109
    """Connect to ip:port within ``timeout`` seconds, close at once, and report what happened."""
    address_family(ip)  # a hostname is the caller's bug: fail loudly before any traffic
    started = time.monotonic()
    connect_ms: float | None = None
    failure: str | None = None
    error: str | None = None
    sock: socket.socket | None = None
    try:
        async with asyncio.timeout(timeout):
            sock = await open_socket(ip, port)
        connect_ms = _ms(started)
    except Exception as exc:  # network trouble is data; CancelledError still propagates
        found = failure_of(exc)
        failure = str(found)
        if found is Failure.UNKNOWN:
            error = describe(exc)
    finally:
        if sock is not None:
            sock.close()
    return TCPObservation(
        ip=ip,
        port=port,
        failure=failure,
        connect_ms=connect_ms,
        duration_ms=_ms(started),
        error=error,
    )
