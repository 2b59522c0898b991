"""A plain-HTTP server on 127.0.0.1 that is broken on some paths, for everyone who asks.

These are the look-alikes of HTTP blocking that must not be called blocked: the server, not
a censor, misbehaves, so a control that asks for the same path (the innocuous Host, the
helper) sees the same. Any Host is served alike:

    /garbage   random bytes, then close            (not HTTP at all)
    /endless   a header line that never ends        (until the client gives up)
    /headers   100,000 headers                       (more than any client accepts)
    /slow      the page, after ``slow`` seconds      (one slow path on a healthy server)
    anything else: 200 with a small page
"""

from __future__ import annotations

import asyncio
import random
import socket

from tests.servers.tcp_servers import _Peer

PAGE = b"<html><head><title>Fine</title></head><body>a healthy page</body></html>"


class BrokenHTTP(_Peer):
    """Answers each request by its path (see the module docstring)."""

    def __init__(self, *, slow: float = 6.0) -> None:
        super().__init__(idle=30.0)
        self.slow = slow
        self.paths: list[str] = []  # the path of each request, in order

    async def handle(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 65536:
            chunk = await self.recv(conn)
            if not chunk:
                return
            request += chunk
        line = request.split(b"\r\n", 1)[0].split(b" ")
        path = line[1].decode("latin-1") if len(line) > 1 else ""
        self.paths.append(path)
        if path.startswith("/garbage"):
            await loop.sock_sendall(conn, random.Random(7).randbytes(4096))
        elif path.startswith("/endless"):
            await loop.sock_sendall(conn, b"HTTP/1.1 200 OK\r\nX-Endless: ")
            for _ in range(2000):  # bounded: 2 MB at most, until the client lets go
                await loop.sock_sendall(conn, b"a" * 1024)
                await asyncio.sleep(0.005)
        elif path.startswith("/headers"):
            head = b"HTTP/1.1 200 OK\r\n" + b"X-H: v\r\n" * 100_000 + b"\r\n"
            await loop.sock_sendall(conn, head)
        else:
            if path.startswith("/slow"):
                await asyncio.sleep(self.slow)
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                b"Content-Length: " + str(len(PAGE)).encode() + b"\r\n\r\n"
            )
            await loop.sock_sendall(conn, head + PAGE)
        conn.shutdown(socket.SHUT_WR)
        await self.drain(conn)


class CloseAfterRequest(_Peer):
    """Reads a request, sends ``answer`` (maybe nothing), then closes with a FIN."""

    def __init__(self, answer: bytes = b"") -> None:
        super().__init__(idle=30.0)
        self.answer = answer

    async def handle(self, conn: socket.socket) -> None:
        if not await self.recv(conn):
            return
        if self.answer:
            await asyncio.get_running_loop().sock_sendall(conn, self.answer)
        conn.shutdown(socket.SHUT_WR)
        await self.drain(conn)
