"""A resource worth timing, and an on-path policer that slows it, both on 127.0.0.1.

    async with ByteServer(ca, ["cdn.test"]) as origin, Pacer(origin.port, rate=100_000,
                                                            names={"cdn.test"}) as censor:
        await download(f"https://cdn.test:{censor.port}/bytes/1000000", "127.0.0.1", ...)

``ByteServer`` answers ``GET /bytes/{n}`` over HTTPS with n bytes, written 1 KiB at a time so
that each TLS record is small (a paced stream then reaches the client as a steady trickle
rather than one 16 KiB record now and then); it honours ``Range: bytes=0-M`` as a CDN does.

``Pacer`` is the censor: a TCP proxy that lets the client's bytes through untouched and sends
the server's at ``rate`` bytes per second, as tc's htb class does to a marked connection. It
paces every connection (``names=None``: an IP throttle, or a slow link), or only those whose
first chunk (the ClientHello) carries one of ``names`` (SNI throttling: the string match of the
lab's iptables rule). With ``after=N`` the first N bytes from the server pass at full speed
(a byte-count trigger, like ``-m connbytes --connbytes N:``). Each connection is recorded:
its ClientHello, whether it was paced, and when it began and when the client let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

import trustme
from aiohttp import web

from tests.servers.tcp_servers import HOST, _Peer, _reset

CHUNK = 1024  # bytes per write, so per TLS record, from ByteServer
QUANTUM = 1024  # the pacer's burst: it never runs further ahead of its rate than this
MAX_SIZE = 64 * 1024 * 1024


class ByteServer:
    """HTTPS on a random 127.0.0.1 port: GET /bytes/{n} gives n bytes, in 1 KiB records."""

    ip = HOST

    def __init__(self, ca: trustme.CA, names: Iterable[str]) -> None:
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names, "localhost", "127.0.0.1").configure_cert(self._ssl)
        self.ranges: list[str | None] = []  # the Range header of each request
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        """The HTTPS port."""
        assert self._sock is not None, "server not started"
        return int(self._sock.getsockname()[1])

    async def __aenter__(self) -> ByteServer:
        app = web.Application()
        app.router.add_get("/bytes/{n}", self._bytes)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((HOST, 0))
        await web.SockSite(self._runner, self._sock, ssl_context=self._ssl).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sock is not None:
            self._sock.close()

    async def _bytes(self, request: web.Request) -> web.StreamResponse:
        size = min(int(request.match_info["n"]), MAX_SIZE)
        wanted = request.headers.get("Range")
        self.ranges.append(wanted)
        status = 200
        if wanted and wanted.startswith("bytes=0-") and wanted[8:].isdigit():
            size, status = min(size, int(wanted[8:]) + 1), 206
        response = web.StreamResponse(status=status)
        response.content_type = "application/octet-stream"
        response.content_length = size
        await response.prepare(request)
        block = bytes(range(256)) * (CHUNK // 256)
        sent = 0
        try:
            while sent < size:
                piece = block[: min(CHUNK, size - sent)]
                await response.write(piece)
                sent += len(piece)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading: its budget ran out, as it should
        return response


@dataclass
class Proxied:
    """One connection through the pacer, as the censor saw it."""

    hello: bytes  # the client's first chunk (a ClientHello: the SNI is in clear)
    paced: bool
    started: float  # loop time of the accept
    ended: float | None = None  # loop time the client closed or reset its side


class Pacer(_Peer):
    """A policing TCP proxy to 127.0.0.1:upstream_port (see the module docstring)."""

    def __init__(
        self,
        upstream_port: int,
        *,
        rate: int,
        names: Iterable[str] | None = None,
        after: int = 0,
        idle: float = 30.0,
    ) -> None:
        super().__init__(idle=idle)
        if rate < QUANTUM:
            raise ValueError(f"rate must be at least {QUANTUM} bytes per second")
        self.upstream_port = upstream_port
        self.rate = rate
        self.names = None if names is None else frozenset(names)
        self.after = after
        self.connections: list[Proxied] = []

    def intervals(self, hello_has: str | None = None) -> list[tuple[float, float]]:
        """(start, end) of each finished connection, those whose ClientHello names a name."""
        return [
            (c.started, c.ended)
            for c in self.connections
            if c.ended is not None and (hello_has is None or hello_has.encode() in c.hello)
        ]

    async def handle(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = await self.recv(conn)
        if not first:
            return
        paced = self.names is None or any(name.encode() in first for name in self.names)
        record = Proxied(first, paced, started)
        self.connections.append(record)
        upstream = self._track(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        try:
            async with asyncio.timeout(self.idle):
                await loop.sock_connect(upstream, (HOST, self.upstream_port))
                await loop.sock_sendall(upstream, first)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._upstream(conn, upstream, record))
                group.create_task(self._downstream(upstream, conn, paced))
        except* (ConnectionResetError, BrokenPipeError):
            for sock in (conn, upstream):  # a reset passes on as a reset
                self._sockets.discard(sock)
                with contextlib.suppress(OSError):
                    _reset(sock)
        finally:
            if record.ended is None:
                record.ended = loop.time()
            self._sockets.discard(upstream)
            upstream.close()

    async def _upstream(self, client: socket.socket, server: socket.socket, rec: Proxied) -> None:
        """The client's bytes, untouched; when the client lets go, the connection has ended."""
        loop = asyncio.get_running_loop()
        try:
            while data := await self.recv(client):
                async with asyncio.timeout(self.idle):
                    await loop.sock_sendall(server, data)
        finally:
            rec.ended = loop.time()
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_WR)

    async def _downstream(self, server: socket.socket, client: socket.socket, paced: bool) -> None:
        """The server's bytes: the first ``after`` at once, the rest (if paced) at ``rate``."""
        loop = asyncio.get_running_loop()
        passed = 0
        budget_start: float | None = None
        paced_bytes = 0
        while data := await self.recv(server):
            view = memoryview(data)
            while view:
                if not paced or passed < self.after:
                    n = len(view) if not paced else min(len(view), self.after - passed)
                else:
                    if budget_start is None:
                        budget_start = loop.time()
                    allowed = int((loop.time() - budget_start) * self.rate) + QUANTUM - paced_bytes
                    # Send in quanta, and sleep until one has been earned: sending whatever
                    # was earned since the last send was a busy loop of 1-byte writes that
                    # never yielded, starving every server in this loop (and, through the
                    # GIL, the probe) for most of a transfer.
                    need = min(len(view), QUANTUM)
                    if allowed < need:
                        await asyncio.sleep((need - allowed) / self.rate)
                        continue
                    n = min(len(view), allowed)
                    paced_bytes += n
                async with asyncio.timeout(self.idle):
                    await loop.sock_sendall(client, view[:n])
                passed += n
                view = view[n:]
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)
