"""Keep-alive HTTP/1.1 connections to DNS-over-HTTPS servers, each reused query after query.

A sweep asks its DoH servers one query per name (thousands) over a few connections. Through
httpx each query cost more CPU than the input's own HTTP fetch: its client, its pool (which
scans every connection and every waiting request for each one) and anyio's streams. This
sends the same request (httpx's headers, in its order) with h11, TLS driven through memory
BIOs over an asyncio transport, and keeps the connection for the next query while the server
keeps it open.

The DoH answer is a control, not the measurement, and reusing its connection is the point
(one TLS handshake per connection, not per name). Errors arrive as the httpx types the httpx
client raised (the original as the cause), so measurements.failures maps them as before.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable

import h11
import httpx

from measurements.http1 import MAX_EVENT_BYTES, READ_BYTES, next_event

_USER_AGENT = f"python-httpx/{httpx.__version__}".encode("ascii")  # what the httpx client sent
_IDLE_KEPT = 20  # httpx's max_keepalive_connections for DoH
_IDLE_EXPIRY = 60.0  # seconds, httpx's keepalive_expiry for DoH


class _Wire(asyncio.Protocol):
    """The TCP side of a connection: the server's bytes (TLS records) as they arrive.

    TLS is driven here through memory BIOs rather than by asyncio's SSL transport, which
    gives every connection a 256 KiB read buffer (zeroed, so resident) for what are
    answers of a few hundred bytes: a sweep at full concurrency holds a dozen of them.
    """

    def __init__(self) -> None:
        self.pending = bytearray()
        self.closed = False  # the server's EOF, or the connection lost
        self.lost: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.pending += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close our side too: a half-open DoH connection is of no use

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed, self.lost = True, exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self) -> bytes:
        """What arrived since the last call (waiting for something); b"" at the end."""
        while not self.pending and not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if not self.pending and self.lost is not None:
            raise self.lost
        data = bytes(self.pending)
        self.pending.clear()
        return data


class _Connection:
    """One HTTP/1.1 connection: its transport, its TLS object and its h11 state."""

    def __init__(self, transport: asyncio.Transport, wire: _Wire) -> None:
        self.transport, self.wire = transport, wire
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls: ssl.SSLObject | None = None
        self.h11 = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=MAX_EVENT_BYTES)
        self.idle_since = time.monotonic()

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        try:
            await self._tls_call(tls.do_handshake)
        except ssl.SSLEOFError as exc:
            # What asyncio's SSL transport made of a close before the handshake was done.
            raise ConnectionResetError("closed during the TLS handshake") from exc
        self.tls = tls

    async def _tls_call(self, call: Callable[[], object]) -> object:
        """Run an SSLObject call, feeding it what the server sent until it completes."""
        while True:
            try:
                result = call()
            except ssl.SSLWantReadError:
                self._flush()
                data = await self.wire.take()
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
            else:
                self._flush()
                return result

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def usable(self) -> bool:
        """Still worth a query: open, not closed by the server, not idle too long."""
        fresh = time.monotonic() - self.idle_since < _IDLE_EXPIRY
        # Bytes from the server on an idle connection: its close_notify, most likely, or
        # something unasked for; either way the next answer would not be the next query's
        # (httpcore asked the socket the same before reusing a connection).
        idle = not self.wire.pending and not self.wire.closed
        return fresh and idle and not self.transport.is_closing()

    def close(self) -> None:
        # At once and without close_notify, as the httpx client's connections closed.
        self.transport.abort()

    async def _read(self) -> bytes:
        tls = self.tls
        assert tls is not None
        try:
            data = await self._tls_call(lambda: tls.read(READ_BYTES))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""  # the server closed (with or without close_notify): the end, for h11
        except OSError as exc:  # ssl.SSLError included: the stream was broken
            raise httpx.ReadError("") from exc
        assert isinstance(data, bytes)
        return data

    async def _event(self) -> h11.Event | type[h11.PAUSED]:
        return await next_event(self.h11, self._read)

    async def post(
        self, url: httpx.URL, headers: list[tuple[bytes, bytes]], body: bytes, limit: int
    ) -> tuple[int, httpx.Headers, bytes]:
        """One request and its answer: the whole body, or its first bytes past ``limit`` (the
        caller refuses it; the connection, its answer unread, is not reused)."""
        request = h11.Request(method=b"POST", target=url.raw_path, headers=headers)
        try:
            wire = b"".join(
                self.h11.send(event) or b"" for event in (request, h11.Data(data=body))
            ) + (self.h11.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        tls = self.tls
        assert tls is not None
        try:
            if self.transport.is_closing():
                raise ConnectionResetError("the connection is closed")
            await self._tls_call(lambda: tls.write(wire))
        except OSError as exc:
            raise httpx.WriteError("") from exc
        while not isinstance(event := await self._event(), h11.Response):
            pass  # a 1xx
        answer = bytearray()
        while isinstance(part := await self._event(), h11.Data):
            answer += part.data
            if len(answer) > limit:
                break
        return event.status_code, httpx.Headers(event.headers.raw_items()), bytes(answer)

    def reusable(self) -> bool:
        """Whether the exchange ended cleanly and both sides keep the connection."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self.idle_since = time.monotonic()
            return True
        return False


class DoHConnections:
    """The connections of one sweep to its DoH servers: opened as queries need them, kept
    for the next query while they stay open, closed by ``aclose``."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def _open(self, url: httpx.URL) -> _Connection:
        host, port = url.host, url.port or 443
        # What httpcore did to the context of every HTTP/1.1 connection: offer http/1.1 alone.
        self._context.set_alpn_protocols(["http/1.1"])
        loop = asyncio.get_running_loop()
        try:
            # A name is resolved by the system, trying its addresses as anyio did.
            transport, wire = await loop.create_connection(
                _Wire, host, port, happy_eyeballs_delay=0.25
            )
        except OSError as exc:
            raise httpx.ConnectError("All connection attempts failed") from exc
        conn = _Connection(transport, wire)
        try:
            await conn.start_tls(self._context, host)
        except ssl.SSLError as exc:
            conn.close()
            raise httpx.ConnectError(str(exc)) from exc
        except OSError as exc:  # reset, or lost, during the handshake
            conn.close()
            raise httpx.ConnectError("All connection attempts failed") from exc
        except BaseException:
            conn.close()  # cancelled, or the connection lost mid-handshake
            raise
        return conn

    def _take(self, origin: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(origin, [])
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    async def post(
        self, url: str, headers: dict[str, str], body: bytes, limit: int
    ) -> tuple[int, httpx.Headers, bytes]:
        """POST ``body`` to ``url`` on an idle connection to its server, else a new one."""
        target = httpx.URL(url)
        if target.scheme != "https":
            raise ValueError(f"not an https URL: {url!r}")
        origin = (target.host, target.port or 443)
        conn = self._take(origin) or await self._open(target)
        wire_headers = [
            (b"Host", target.netloc), (b"Connection", b"keep-alive"), (b"User-Agent", _USER_AGENT),
            *((k.encode("ascii"), v.encode("ascii")) for k, v in headers.items()),
            (b"Content-Length", str(len(body)).encode("ascii")),
        ]  # fmt: skip
        kept = False
        try:
            answer = await conn.post(target, wire_headers, body, limit)
            kept = conn.reusable()
            return answer
        finally:
            idle = self._idle.setdefault(origin, [])
            if kept and len(idle) < _IDLE_KEPT:
                idle.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        """Close every idle connection (one in use is closed by its query)."""
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
