"""A local web server for HTTP measurements: one aiohttp app over plain HTTP and HTTPS.

Usable from pytest (the ``web_server`` fixture) and from plain asyncio programs (benchmarks):

    async with WebServer(ca, ["www.example.test"]) as server:
        url = server.url("/big", host="www.example.test")   # fetch it pinned to server.ip

Both listeners bind 127.0.0.1 on random ports; made-up names are reached by pinning them to
127.0.0.1, never by resolving them. Each behaviour a measurement must recognise is a route:

    /                 an HTML page titled "Welcome to {Host}"
    /redirect?to=URL  302 to URL (``&status=301``: that redirect status instead)
    /big              2 MiB (deterministic bytes)
    /slow?seconds=N   a little, then one byte every 0.2 s for N seconds (at most 30)
    /reset            headers and part of the body, then a TCP RST
    /status/{code}    that status
    /blockpage        a page like a national blockpage
    /notitle          HTML without a <title>

``use_certificate_from(other_ca)`` makes the HTTPS listener present a certificate issued by
another CA from the next handshake on (an interceptor's rogue root).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

import pytest
import trustme
from aiohttp import web
from aiohttp.typedefs import Handler

BIG_SIZE = 2 * 1024 * 1024
BIG_BODY = bytes(range(256)) * (BIG_SIZE // 256)
RESET_SENT = 4096  # body bytes /reset sends before the RST
RESET_DECLARED = 65536  # the Content-Length it promises
SLOW_LIMIT = 30.0  # /slow never lasts longer than this
BLOCKPAGE_TEXT = "This resource has been blocked by decision of the authorities"


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """A request as the server saw it."""

    scheme: str
    host: str | None  # the Host header
    path: str


def _page(title: str | None, text: str) -> str:
    head = f"<head><title>{title}</title></head>" if title is not None else "<head></head>"
    return f"<!DOCTYPE html>\n<html>{head}<body><p>{text}</p></body></html>\n"


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class WebServer:
    """The test web server: one app over HTTP and HTTPS on 127.0.0.1, random ports."""

    ip = "127.0.0.1"

    def __init__(self, ca: trustme.CA, names: list[str]) -> None:
        self.names = list(names)
        self.requests: list[SeenRequest] = []
        self.server_names: list[str | None] = []  # SNI of each TLS handshake
        self._server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_context.sni_callback = self._on_sni
        self.use_certificate_from(ca)
        self._runner: web.AppRunner | None = None
        self._http_sock: socket.socket | None = None
        self._https_sock: socket.socket | None = None

    def _on_sni(self, _sslobj: object, name: str | None, _context: ssl.SSLContext) -> None:
        self.server_names.append(name)

    def use_certificate_from(self, ca: trustme.CA) -> None:
        """Present a certificate issued by ``ca`` from the next handshake on."""
        # Loading a chain into the live context replaces its certificate for new connections.
        ca.issue_cert(*self.names, "localhost", "127.0.0.1").configure_cert(self._server_context)

    @property
    def http_port(self) -> int:
        """Port of the plain HTTP listener."""
        assert self._http_sock is not None, "server not started"
        return int(self._http_sock.getsockname()[1])

    @property
    def https_port(self) -> int:
        """Port of the HTTPS listener."""
        assert self._https_sock is not None, "server not started"
        return int(self._https_sock.getsockname()[1])

    def url(self, path: str = "/", *, host: str | None = None, https: bool = True) -> str:
        """An absolute URL on this server under ``host`` (default: its first name)."""
        host = host or (self.names[0] if self.names else "localhost")
        if https:
            return f"https://{host}:{self.https_port}{path}"
        return f"http://{host}:{self.http_port}{path}"

    def hosts_seen(self, path: str | None = None) -> list[str | None]:
        """Host headers of the requests received (for ``path`` only, if given)."""
        return [r.host for r in self.requests if path is None or r.path == path]

    async def start(self) -> None:
        """Bind both listeners and serve."""
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/", self._index)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/big", self._big)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/reset", self._reset)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/blockpage", self._blockpage)
        app.router.add_get("/notitle", self._notitle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._http_sock = _listening_socket()
        self._https_sock = _listening_socket()
        await web.SockSite(self._runner, self._http_sock).start()
        await web.SockSite(self._runner, self._https_sock, ssl_context=self._server_context).start()

    async def stop(self) -> None:
        """Stop serving and close the listeners."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for sock in (self._http_sock, self._https_sock):
            if sock is not None:
                sock.close()

    async def __aenter__(self) -> WebServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(SeenRequest(request.scheme, request.headers.get("Host"), request.path))
        return await handler(request)

    async def _index(self, request: web.Request) -> web.Response:
        host = request.url.host or ""
        return web.Response(text=_page(f"Welcome to {host}", "It works."), content_type="text/html")

    async def _redirect(self, request: web.Request) -> web.Response:
        status = int(request.query.get("status", "302"))
        if status not in (301, 302, 303, 307, 308):
            raise web.HTTPBadRequest(text="not a redirect status")
        return web.Response(status=status, headers={"Location": request.query.get("to", "/")})

    async def _big(self, request: web.Request) -> web.Response:
        return web.Response(body=BIG_BODY, content_type="application/octet-stream")

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        seconds = min(float(request.query.get("seconds", "5")), SLOW_LIMIT)
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        try:
            await response.write(b"starting\n")
            deadline = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.2)
                await response.write(b".")
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client gave up, as the measurement under test should
        return response

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "application/octet-stream"},
        )
        response.content_length = RESET_DECLARED
        await response.prepare(request)
        await response.write(b"r" * RESET_SENT)
        # Let the client take the headers before the RST (a RST can discard unread data).
        await asyncio.sleep(0.2)
        transport = request.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        # SO_LINGER (on, 0 s): close() sends RST instead of FIN, as a middlebox's reset looks.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return response

    async def _status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        if not 200 <= code <= 599:
            raise web.HTTPBadRequest(text="status out of range")
        return web.Response(status=code, text=f"status {code}\n")

    async def _blockpage(self, request: web.Request) -> web.Response:
        return web.Response(
            text=_page("Access restricted", BLOCKPAGE_TEXT), content_type="text/html"
        )

    async def _notitle(self, request: web.Request) -> web.Response:
        return web.Response(text=_page(None, "No title here."), content_type="text/html")


TEST_NAMES = ["www.example.test", "other.example.test", "blocked.example.test"]


@pytest.fixture
async def web_server(ca: trustme.CA) -> AsyncIterator[WebServer]:
    """A WebServer with a certificate from the trusted test CA for TEST_NAMES."""
    async with WebServer(ca, TEST_NAMES) as server:
        yield server


@pytest.fixture
async def rogue_web_server(ca: trustme.CA, rogue_ca: trustme.CA) -> AsyncIterator[WebServer]:
    """A WebServer presenting a certificate from the untrusted rogue CA (an interceptor)."""
    async with WebServer(ca, TEST_NAMES) as server:
        server.use_certificate_from(rogue_ca)
        yield server
