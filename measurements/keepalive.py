"""Keep-alive HTTP/1.1 connections to DNS-over-HTTPS servers, each reused query after query.

A sweep asks its DoH servers one query per name (thousands) over a few connections. Through
httpx each query cost more CPU than the input's own HTTP fetch: its client, its pool (which
scans every connection and every waiting request for each one) and anyio's streams. This
sends the same request (httpx's headers, in its order) with h11 over an asyncio stream, and
keeps the connection for the next query while the server keeps it open.

The DoH answer is a control, not the measurement, and reusing its connection is the point
(one TLS handshake per connection, not per name). Errors arrive as the httpx types the httpx
client raised (the original as the cause), so measurements.failures maps them as before.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import time

import h11
import httpx

from measurements.http1 import MAX_EVENT_BYTES, READ_BYTES, next_event

_USER_AGENT = f"python-httpx/{httpx.__version__}".encode("ascii")  # what the httpx client sent
_IDLE_KEPT = 20  # httpx's max_keepalive_connections for DoH
_IDLE_EXPIRY = 60.0  # seconds, httpx's keepalive_expiry for DoH


class _Connection:
    """One HTTP/1.1 connection: its stream and its h11 state."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=MAX_EVENT_BYTES)
        self.idle_since = time.monotonic()

    def usable(self) -> bool:
        """Still worth a query: open, not closed by the server, not idle too long."""
        fresh = time.monotonic() - self.idle_since < _IDLE_EXPIRY
        if not fresh or self.writer.is_closing() or self.reader.at_eof():
            return False
        # An idle connection with bytes waiting that the loop has not read yet: the server's
        # close, most likely (httpcore asked the socket the same before reusing it).
        sock = self.writer.get_extra_info("socket")
        return sock is None or not select.select([sock], [], [], 0)[0]

    def close(self) -> None:
        # At once and without close_notify, as the httpx client's connections closed.
        self.writer.transport.abort()

    async def _read(self) -> bytes:
        try:
            return await self.reader.read(READ_BYTES)
        except OSError as exc:
            raise httpx.ReadError("") from exc

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
        try:
            self.writer.write(wire)
            await self.writer.drain()
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
        try:
            # A name is resolved by the system, trying its addresses as anyio did.
            reader, writer = await asyncio.open_connection(
                host, port, ssl=self._context, server_hostname=host, happy_eyeballs_delay=0.25
            )
        except ssl.SSLError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        except OSError as exc:
            raise httpx.ConnectError("All connection attempts failed") from exc
        return _Connection(reader, writer)

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
