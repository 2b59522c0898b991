"""A server that gives one page whatever name or path is asked: a middlebox's, or a CDN edge's.

    server = PageServer("127.0.0.2", http_port, "Access Denied", "Access Denied")
    await server.start()

It binds another loopback address (127.0.0.0/8 is all the host's) at the ports of the
world's web server, so a URL's port reaches it when the resolver sends the name there. With
``mirror=True`` the page is the web server's own front page for the Host asked (what a CDN's
local edge serves); with ``https_port`` and ``cert_names`` it also serves HTTPS, with a
certificate from ``ca`` naming only those names (a blockpage server's own certificate).
"""

from __future__ import annotations

import ssl

import trustme
from aiohttp import web

from tests.servers.http_server import SeenRequest, _page


class PageServer:
    """One page (or the web server's front page, mirrored) on one address, HTTP and HTTPS."""

    def __init__(
        self,
        ip: str,
        http_port: int,
        title: str,
        text: str,
        *,
        mirror: bool = False,
        https_port: int | None = None,
        ca: trustme.CA | None = None,
        cert_names: tuple[str, ...] = (),
    ) -> None:
        self.ip, self.http_port, self.https_port = ip, http_port, https_port
        self.title, self.text, self.mirror = title, text, mirror
        self.requests: list[SeenRequest] = []
        self._ctx: ssl.SSLContext | None = None
        if https_port is not None:
            assert ca is not None and cert_names, "HTTPS needs a CA and the names to certify"
            self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(*cert_names).configure_cert(self._ctx)
        self._runner: web.AppRunner | None = None

    async def _any(self, request: web.Request) -> web.Response:
        host = (request.host or "").split(":")[0]
        self.requests.append(SeenRequest(request.scheme, request.headers.get("Host"), request.path))
        if self.mirror:
            return web.Response(
                text=_page(f"Welcome to {host}", "It works."), content_type="text/html"
            )
        return web.Response(text=_page(self.title, self.text), content_type="text/html")

    async def start(self) -> None:
        """Bind and serve."""
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._any)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.ip, self.http_port).start()
        if self.https_port is not None:
            await web.TCPSite(self._runner, self.ip, self.https_port, ssl_context=self._ctx).start()

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
