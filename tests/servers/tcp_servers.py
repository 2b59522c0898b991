"""Misbehaving TCP and TLS peers on 127.0.0.1, one per way a censor or a server can behave.

Each is an async context manager bound to a random loopback port, exposing ``.port``,
``.accepted`` and ``.finished`` (connections taken, and done with, so far). They need only a
running asyncio loop, so the benchmarks use them outside pytest too:

    async with SNIFilter(upstream.port, {"target.test"}, "reset") as censor:
        await tls.handshake("127.0.0.1", censor.port, "target.test")

Every connection is a tracked task, cancelled and its socket closed on exit; every wait of a
peer is bounded by ``idle`` seconds. The pytest fixtures at the end wrap the simple ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Coroutine, Iterable
from types import TracebackType
from typing import Any, Literal, Self

import pytest
import trustme

HOST = "127.0.0.1"
_READ_SIZE = 65536
_EXIT_GRACE = 2.0  # seconds to let cancelled tasks unwind on exit


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST instead of a FIN: SO_LINGER on, with a zero timeout."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Peer:
    """A listener on 127.0.0.1 whose subclasses say what to do with each connection."""

    backlog = 16

    def __init__(self, *, idle: float = 30.0) -> None:
        self.port = 0
        self.accepted = 0  # connections taken
        self.finished = 0  # connections whose handling has ended (the client closed, ...)
        self.idle = idle
        self._listener: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sockets: set[socket.socket] = set()
        self._progress = asyncio.Condition()

    async def __aenter__(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(self.backlog)
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        await self._started()
        return self

    async def _started(self) -> None:
        """Begin accepting (subclasses that never accept override this)."""
        self._spawn(self._accept_loop())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_EXIT_GRACE)
        for sock in list(self._sockets):
            sock.close()
        self._sockets.clear()
        if self._listener is not None:
            self._listener.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _track(self, sock: socket.socket) -> socket.socket:
        sock.setblocking(False)
        self._sockets.add(sock)
        return sock

    async def _accept_loop(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self._listener)
            self.accepted += 1
            self._spawn(self._serve(self._track(conn)))

    async def _serve(self, conn: socket.socket) -> None:
        try:
            await self.handle(conn)
        except* (OSError, EOFError):  # SSLError, TimeoutError, IncompleteReadError included
            pass  # the client went away or misbehaved: that is the client's test's business
        finally:
            self._sockets.discard(conn)
            conn.close()
            self.finished += 1
            async with self._progress:
                self._progress.notify_all()

    async def wait_finished(self, count: int = 1) -> None:
        """Wait until ``count`` connections have been handled (bound it with asyncio.timeout)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.finished >= count)

    async def handle(self, conn: socket.socket) -> None:
        """What this peer does with one accepted connection."""
        raise NotImplementedError

    async def recv(self, conn: socket.socket) -> bytes:
        """One chunk from the client (b"" at EOF), waiting at most ``idle`` seconds."""
        async with asyncio.timeout(self.idle):
            return await asyncio.get_running_loop().sock_recv(conn, _READ_SIZE)

    async def drain(self, conn: socket.socket) -> None:
        """Read and discard until the client closes (or ``idle`` passes with nothing)."""
        while await self.recv(conn):
            pass


class ClosedPort(_Peer):
    """A port with no listener: connects are refused (the kernel answers the SYN with RST)."""

    async def __aenter__(self) -> Self:
        # Bound but never listening: the kernel refuses connects, and holding the port keeps
        # any other socket from listening there while the test runs.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((HOST, 0))
        self._listener = sock
        self.port = sock.getsockname()[1]
        return self


class DroppingPort(_Peer):
    """A port whose SYNs vanish: connects time out, as behind a censor that drops them.

    A listener with backlog 0 holds one completed connection in its accept queue; it is never
    accepted, so the queue stays full and Linux drops every later SYN without answering
    (tcp_conn_request: "accept queue full -> drop", with or without syncookies). The client
    retransmits its SYN until its own timeout: no RST, no ICMP, exactly a blackhole.
    """

    backlog = 0

    async def _started(self) -> None:
        filler = self._track(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        async with asyncio.timeout(2.0):
            await asyncio.get_running_loop().sock_connect(filler, (HOST, self.port))


class SilentListener(_Peer):
    """Accepts and reads everything, answers nothing: the client's handshake or request times out.

    (Unlike DroppingPort, the TCP connect itself succeeds.)
    """

    async def handle(self, conn: socket.socket) -> None:
        await self.drain(conn)


class ResetAfterFirstData(_Peer):
    """Reads the first bytes (a ClientHello, a request) then resets: connection_reset."""

    async def handle(self, conn: socket.socket) -> None:
        if await self.recv(conn):
            self._sockets.discard(conn)
            _reset(conn)


class EOFAfterFirstData(_Peer):
    """Reads the first bytes then closes cleanly with a FIN: eof_error."""

    async def handle(self, conn: socket.socket) -> None:
        if await self.recv(conn):
            conn.shutdown(socket.SHUT_WR)
            # Closing with unread bytes in the receive buffer would send RST, not FIN: read
            # on until the client, having seen the EOF, closes its side.
            await self.drain(conn)


class TLSServer(_Peer):
    """A TLS server with a certificate per name chosen by SNI, answering one HTTP/1.1 200.

    An unknown or absent SNI gets the certificate of ``default_name`` (or of "default.test"),
    unless ``reject_unknown_sni`` makes it answer with an unrecognized_name alert. The body
    names the certificate served. ``not_before``/``not_after`` set every certificate's validity
    (an expired one, say). Pass the rogue CA for an interceptor.
    """

    def __init__(
        self,
        ca: trustme.CA,
        names: Iterable[str],
        *,
        default_name: str | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        alpn: tuple[str, ...] = ("http/1.1",),
        reject_unknown_sni: bool = False,
        idle: float = 30.0,
    ) -> None:
        super().__init__(idle=idle)
        self.names = tuple(names)
        self.default_name = default_name or "default.test"
        self.reject_unknown_sni = reject_unknown_sni
        self._contexts: dict[str, ssl.SSLContext] = {}
        for name in {*self.names, self.default_name}:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            leaf = ca.issue_cert(name, common_name=name, not_before=not_before, not_after=not_after)
            leaf.configure_cert(ctx)
            if alpn:
                ctx.set_alpn_protocols(list(alpn))
            self._contexts[name] = ctx
        self._default = self._contexts[self.default_name]
        self._default.sni_callback = self._select

    def _select(self, tls: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> int | None:
        chosen = self._contexts.get(name.lower()) if name else None
        if chosen is None and self.reject_unknown_sni:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        tls.context = chosen or self._default
        return None

    async def handle(self, conn: socket.socket) -> None:
        # Driven by hand over memory BIOs rather than by asyncio's SSL transport, which drops
        # the alert OpenSSL queues when a handshake fails: a real server sends it.
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self._default.wrap_bio(incoming, outgoing, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                await self._send(conn, outgoing)  # the alert
                raise
            await self._send(conn, outgoing)
            if not await self._receive(conn, incoming):
                return
        await self._send(conn, outgoing)
        name = next(n for n, c in self._contexts.items() if c is tls.context)
        request = b""
        while b"\r\n\r\n" not in request and len(request) < _READ_SIZE:
            try:
                chunk = tls.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                await self._send(conn, outgoing)  # TLS 1.3 session tickets
                if not await self._receive(conn, incoming):
                    return  # a handshake-only client (measurements.tls) sends no request
                continue
            if not chunk:
                return  # close_notify (b"", not SSLZeroReturnError): no request either
            request += chunk
        body = f"hello from {name}\n".encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        tls.write(head.encode() + b"Connection: close\r\n\r\n" + body)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.unwrap()  # close_notify; the client's is not awaited
        await self._send(conn, outgoing)
        conn.shutdown(socket.SHUT_WR)
        await self.drain(conn)  # until the client closes: a close with unread bytes is a RST

    async def _send(self, conn: socket.socket, outgoing: ssl.MemoryBIO) -> None:
        if data := outgoing.read():
            async with asyncio.timeout(self.idle):
                await asyncio.get_running_loop().sock_sendall(conn, data)

    async def _receive(self, conn: socket.socket, incoming: ssl.MemoryBIO) -> bool:
        """Feed the next chunk to OpenSSL; False at EOF."""
        if data := await self.recv(conn):
            incoming.write(data)
        return bool(data)


FilterAction = Literal["reset", "drop", "eof"]


class SNIFilter(_Peer):
    """A censoring TCP proxy to 127.0.0.1:upstream_port that matches the client's first chunk.

    If the first chunk holds a blocked name as bytes (the SNI of a ClientHello, the Host
    header of an HTTP request), it resets, goes silent, or closes cleanly; otherwise it relays
    both ways. So one IP:port answers an innocuous SNI and not the target's, as under SNI
    filtering. Matching is exact and case-sensitive, like an iptables string match.
    """

    def __init__(
        self,
        upstream_port: int,
        blocked: Iterable[str],
        action: FilterAction,
        *,
        idle: float = 30.0,
    ) -> None:
        super().__init__(idle=idle)
        if action not in ("reset", "drop", "eof"):
            raise ValueError(f"unknown action {action!r}")
        self.upstream_port = upstream_port
        self.blocked = frozenset(blocked)
        self.action = action
        self.matched = 0  # connections the filter acted on

    async def handle(self, conn: socket.socket) -> None:
        first = await self.recv(conn)
        if not first:
            return
        if any(name.encode() in first for name in self.blocked):
            self.matched += 1
            if self.action == "reset":
                self._sockets.discard(conn)
                _reset(conn)
            elif self.action == "drop":
                await self.drain(conn)
            else:
                conn.shutdown(socket.SHUT_WR)
                await self.drain(conn)
            return
        loop = asyncio.get_running_loop()
        upstream = self._track(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        try:
            async with asyncio.timeout(self.idle):
                await loop.sock_connect(upstream, (HOST, self.upstream_port))
                await loop.sock_sendall(upstream, first)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pipe(conn, upstream))
                group.create_task(self._pipe(upstream, conn))
        except* (ConnectionResetError, BrokenPipeError):
            # Pass a reset on as a reset, so each side sees what a real path would show.
            for sock in (conn, upstream):
                self._sockets.discard(sock)
                with contextlib.suppress(OSError):
                    _reset(sock)
        finally:
            self._sockets.discard(upstream)
            upstream.close()

    async def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy until EOF, then pass the EOF on (half-close), as a TCP middlebox does."""
        loop = asyncio.get_running_loop()
        while data := await self.recv(source):
            async with asyncio.timeout(self.idle):
                await loop.sock_sendall(sink, data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


# --- pytest fixtures (import them into a conftest.py) --------------------------------------


@pytest.fixture
async def closed_port() -> AsyncIterator[ClosedPort]:
    """A loopback port that refuses connects."""
    async with ClosedPort() as peer:
        yield peer


@pytest.fixture
async def dropping_port() -> AsyncIterator[DroppingPort]:
    """A loopback port where connects time out."""
    async with DroppingPort() as peer:
        yield peer


@pytest.fixture
async def silent_listener() -> AsyncIterator[SilentListener]:
    """A loopback peer that accepts and never answers."""
    async with SilentListener() as peer:
        yield peer


@pytest.fixture
async def reset_peer() -> AsyncIterator[ResetAfterFirstData]:
    """A loopback peer that resets after the client's first bytes."""
    async with ResetAfterFirstData() as peer:
        yield peer


@pytest.fixture
async def eof_peer() -> AsyncIterator[EOFAfterFirstData]:
    """A loopback peer that closes cleanly after the client's first bytes."""
    async with EOFAfterFirstData() as peer:
        yield peer
