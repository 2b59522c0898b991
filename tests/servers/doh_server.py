"""A DNS-over-HTTPS endpoint (RFC 8484) on 127.0.0.1 answering from a ScriptedDNSServer's table.

    async with DoHServer(ca, dns_server) as doh:   # names set on dns_server answer here too
        await query_doh("example.test", doh.url, verify=ca_bundle)

Its certificate, issued by the given trustme CA, names 127.0.0.1, localhost and doh.test
(``hostnames`` names others; ``host`` and ``port`` bind elsewhere than a random loopback port).
``handshakes`` counts the TLS handshakes clients began (each ClientHello, with or without SNI),
so a test can tell one kept-alive connection from one connection per query.
Over DoH there is no datagram to race: Inject answers with the genuine addresses and Truncate
with the full answer; Silent holds the request until the client gives up or the server stops.
``reply(name, HTTPReply(...))`` answers a name with a fixed HTTP reply instead (a status, a
content type, a body that is not DNS), for the failures only HTTP can produce.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import dns.exception
import dns.message
import pytest
import trustme
from aiohttp import web

from tests.servers.dns_server import Behaviour, ScriptedDNSServer, plan

_CONTENT_TYPE = "application/dns-message"
# A silent request is answered 503 after this long at most, so nothing waits forever.
_SILENCE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class HTTPReply:
    """A fixed HTTP answer to a DoH query, whatever the query asked."""

    status: int = 200
    content_type: str = _CONTENT_TYPE
    body: bytes = b""


class DoHServer:
    """An HTTPS DoH endpoint at /dns-query on a random 127.0.0.1 port."""

    def __init__(
        self,
        ca: trustme.CA,
        script: ScriptedDNSServer | None = None,
        *,
        hostnames: tuple[str, ...] = ("127.0.0.1", "localhost", "doh.test"),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self._wanted_port = port
        # The script need not be started: only its table and counters are used here.
        self.script = script if script is not None else ScriptedDNSServer()
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*hostnames).configure_cert(self._ssl)
        # OpenSSL calls this once per ClientHello, whether or not it names a server.
        self._ssl.sni_callback = self._hello
        self.handshakes = 0
        self._replies: dict[str, HTTPReply] = {}
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._port: int | None = None

    def _hello(self, conn: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        self.handshakes += 1

    def set(self, name: str, behaviour: Behaviour) -> None:
        """Script how a name is answered (shared with the script's UDP/TCP server)."""
        self.script.set(name, behaviour)

    def reply(self, name: str, reply: HTTPReply) -> None:
        """Answer queries for a name with a fixed HTTP reply (still counted as queries)."""
        self._replies[name.rstrip(".").lower()] = reply

    @property
    def port(self) -> int:
        """The HTTPS port."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        """ "https://HOST:PORT/dns-query" (no port when it is 443)."""
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://{self.host}{port}/dns-query"

    async def start(self) -> None:
        """Listen on ``port`` of ``host`` (by default a random port of 127.0.0.1)."""
        app = web.Application()
        app.router.add_get("/dns-query", self._handle)
        app.router.add_post("/dns-query", self._handle)
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        # Binding the socket here gives the port without reaching into aiohttp's internals.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._wanted_port))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=self._ssl).start()

    async def stop(self) -> None:
        """Release held requests and stop listening."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DoHServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        """Answer one RFC 8484 GET (?dns=base64url) or POST (application/dns-message)."""
        if request.method == "POST":
            if request.content_type != _CONTENT_TYPE:
                return web.Response(status=415)
            wire = await request.read()
        else:
            encoded = request.query.get("dns", "")
            try:
                wire = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except (binascii.Error, ValueError):
                return web.Response(status=400)
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return web.Response(status=400)
        if not query.question:
            return web.Response(status=400)
        behaviour = self.script.receive(query)
        fixed = self._replies.get(query.question[0].name.to_text(omit_final_dot=True).lower())
        if fixed is not None:
            return web.Response(
                status=fixed.status, body=fixed.body, headers={"Content-Type": fixed.content_type}
            )
        steps = plan(behaviour, query, datagram=False)
        if not steps:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), _SILENCE_SECONDS)
            return web.Response(status=503)
        wait, response = steps[0]
        await asyncio.sleep(wait)
        return web.Response(body=response.to_wire(), content_type=_CONTENT_TYPE)


@pytest.fixture
async def doh_server(ca: trustme.CA, dns_server: ScriptedDNSServer) -> AsyncIterator[DoHServer]:
    """A running DoH server answering from the dns_server fixture's table."""
    async with DoHServer(ca, dns_server) as server:
        yield server
