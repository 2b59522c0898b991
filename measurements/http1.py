"""One HTTP/1.1 exchange on a connection of its own to a chosen address: TCP, TLS, then h11.

What measurements.http measures per hop is one GET on one new connection, never reused: the
pool, client and stream layers of httpx, httpcore and anyio around it cost several times the
CPU of the TLS handshake itself (issue 13), and a sweep makes two fetches or more an input.
This does the same exchange directly: a socket connected to the pinned address (the URL's
host stays the Host header and the SNI; nothing is resolved), the handshake driven through an
ssl.SSLObject, and h11 (the parser httpcore uses) for the request and the response.

It is written to be indistinguishable from the httpx path it replaced, on the wire and in
what it raises: the request's bytes and header order are httpx's; handshake, read and write
errors arrive as the httpx exception types httpcore and anyio raised for them, with the
original exception as the cause, so measurements.failures (the one place that names
failures) maps them as before; a TLS peer that closes without close_notify ends the body as
anyio's non-standard mode does; a write error is ignored so the answer can still be read;
"Server disconnected without sending a response." is httpcore's wording, which
measurements.failures recognises as a cut.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import h11
import httpx

from measurements.tcp import open_socket

READ_BYTES = 64 * 1024  # httpcore's READ_NUM_BYTES: the body arrives in chunks of this size
MAX_EVENT_BYTES = 100 * 1024  # httpcore's bound on a status line and headers
_DISCONNECTED = "Server disconnected without sending a response."

Mark = Callable[[str], None]


def browser_headers(
    target: httpx.URL, agent: str, range_bytes: int | None
) -> list[tuple[bytes, bytes]]:
    """A browser's headers, asking for the body as sent and, if given, its first bytes only.

    Byte for byte and in the order httpx sent them (its Host and Connection first).
    """
    headers = [
        (b"Host", target.netloc),
        (b"Connection", b"keep-alive"),
        (b"User-Agent", agent.encode("ascii")),
        (b"Accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        (b"Accept-Language", b"en-US,en;q=0.5"),
        (b"Accept-Encoding", b"identity"),
    ]
    if range_bytes is not None:
        headers.append((b"Range", f"bytes=0-{range_bytes - 1}".encode("ascii")))
    return headers


def _ragged_eof(exc: ssl.SSLError) -> bool:
    """An EOF without close_notify (anyio ends the stream there rather than failing)."""
    return isinstance(exc, ssl.SSLEOFError) or "UNEXPECTED_EOF_WHILE_READING" in (
        exc.strerror or ""
    )


class Exchange:
    """One GET on one connection; ``mark`` is told when each step starts and completes
    (httpcore's trace names: connect_tcp, start_tls, receive_response_headers)."""

    def __init__(self, ip: str, port: int, tls: tuple[ssl.SSLContext, str] | None, mark: Mark):
        self._ip, self._port, self._tls, self._mark = ip, port, tls, mark
        self._sock: socket.socket | None = None
        self._ssl: ssl.SSLObject | None = None
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._h11 = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=MAX_EVENT_BYTES)
        self.received = 0  # bytes the peer sent above TLS (what HTTP read, or failed to parse)

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        """The TLS session's object once the handshake completed (version, certificate)."""
        return self._ssl

    def close(self) -> None:
        """Close the socket (no close_notify, as httpcore did not send one either)."""
        if self._sock is not None:
            self._sock.close()

    async def open(self) -> None:
        """Connect, then (for HTTPS) handshake."""
        self._mark("connect_tcp.started")
        try:
            self._sock = await open_socket(self._ip, self._port)
        except OSError as exc:
            raise httpx.ConnectError("All connection attempts failed") from exc
        self._mark("connect_tcp.complete")
        if self._tls is None:
            return
        context, server_hostname = self._tls
        self._mark("start_tls.started")
        # What httpcore did to the context of every HTTP/1.1 connection: offer http/1.1 alone.
        context.set_alpn_protocols(["http/1.1"])
        tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        try:
            await self._tls_call(tls.do_handshake)
        except ssl.SSLError as exc:
            raise httpx.ConnectError("" if _ragged_eof(exc) else str(exc)) from exc
        except (OSError, EOFError) as exc:
            raise httpx.ConnectError("") from exc
        self._ssl = tls
        self._mark("start_tls.complete")

    async def _tls_call(self, call: Callable[[], object]) -> object:
        """Run an SSLObject call, feeding it from the socket until it completes (anyio's
        loop: pending bytes flushed before each read and after; on an SSL error, nothing
        more is sent, alerts included)."""
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                result = call()
            except ssl.SSLWantReadError:
                await self._flush()
                data = await loop.sock_recv(self._sock, READ_BYTES)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
            except ssl.SSLError:
                self._incoming.write_eof()
                self._outgoing.write_eof()
                raise
            else:
                await self._flush()
                return result

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            assert self._sock is not None
            await asyncio.get_running_loop().sock_sendall(self._sock, data)

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            if self._ssl is None:
                assert self._sock is not None
                await asyncio.get_running_loop().sock_sendall(self._sock, data)
            else:
                await self._tls_call(lambda: self._ssl.write(data) if self._ssl else 0)
        except ssl.SSLError:
            raise
        except OSError as exc:
            raise httpx.WriteError("") from exc

    async def _read(self) -> bytes:
        try:
            if self._ssl is None:
                assert self._sock is not None
                data = await asyncio.get_running_loop().sock_recv(self._sock, READ_BYTES)
            else:
                tls = self._ssl
                data = bytes(await self._tls_call(lambda: tls.read(READ_BYTES)))  # type: ignore[call-overload]
        except ssl.SSLError as exc:
            if not _ragged_eof(exc):
                raise
            data = b""
        except OSError as exc:
            raise httpx.ReadError("") from exc
        self.received += len(data)
        return data

    async def _event(self) -> h11.Event | type[h11.PAUSED]:
        """The next HTTP event from the peer, reading as h11 needs."""
        return await next_event(self._h11, self._read)

    async def request(
        self, target: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Send the GET and read the response's status and headers, as sent (the names in
        their own case); a 1xx other than 101 is skipped."""
        try:
            wire = self._h11.send(h11.Request(method=b"GET", target=target, headers=headers))
            wire = (wire or b"") + (self._h11.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        try:
            await self._write(wire)
        except httpx.WriteError:
            pass  # the server may have answered and closed: its answer is still read
        while True:
            event = await self._event()
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                break
        self._mark("receive_response_headers.complete")
        return event.status_code, event.headers.raw_items()

    async def body(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive, until its end."""
        while True:
            event = await self._event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                return


async def next_event(
    conn: h11.Connection, read: Callable[[], Awaitable[bytes]]
) -> h11.Event | type[h11.PAUSED]:
    """The next HTTP event from the peer, reading with ``read`` as h11 needs (httpcore's
    loop); h11's protocol errors and a close before the response as httpx's exceptions."""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc
        if event is not h11.NEED_DATA:
            return event  # type: ignore[return-value]
        data = await read()
        if data == b"" and conn.their_state == h11.SEND_RESPONSE:
            raise httpx.RemoteProtocolError(_DISCONNECTED)
        conn.receive_data(data)
