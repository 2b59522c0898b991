"""What bounds the helper's use: the hourly byte budget of throughput tests, and the cap on
the connections one client address may hold (a listener that turns the next one away)."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable

from aiohttp import web

from probe.helper.protocol import ErrorBody


class HourlyBudget:
    """Bytes the helper may download for throughput tests in any hour (a sliding window).

    A request reserves its whole budget (trials x max_bytes) before it starts and settles for
    what it really read afterwards, so tests waiting their turn cannot overdraw it together.
    """

    WINDOW = 3600.0

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._spent: collections.deque[tuple[float, int]] = collections.deque()

    def used(self) -> int:
        """Bytes reserved or read in the last hour."""
        now = self._clock()
        while self._spent and self._spent[0][0] <= now - self.WINDOW:
            self._spent.popleft()
        return sum(n for _, n in self._spent)

    def reserve(self, n: int) -> bool:
        """Take ``n`` bytes from the budget, if they fit."""
        if self.used() + n > self.limit:
            return False
        self._spent.append((self._clock(), n))
        return True

    def settle(self, reserved: int, read: int) -> None:
        """Give back what a test reserved and did not read."""
        if reserved > read:
            self._spent.append((self._clock(), read - reserved))


_TOO_MANY = json.dumps(ErrorBody("too many connections from your address").to_json()).encode()
# Written by the gate itself, before aiohttp has the connection: hence raw bytes.
_TOO_MANY_RESPONSE = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_TOO_MANY), _TOO_MANY)
)


class _Gate(asyncio.Protocol):
    """Hands a new connection to aiohttp unless its client address already holds enough."""

    def __init__(self, server: web.Server, per_client: int) -> None:
        self._server = server
        self._per_client = per_client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else None
        held = sum(
            1
            for h in self._server.connections
            if isinstance(h.peername, tuple) and h.peername[0] == host
        )
        if host is not None and held >= self._per_client:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_TOO_MANY_RESPONSE)
            transport.close()
            return
        handler = self._server()
        transport.set_protocol(handler)
        handler.connection_made(transport)


class HelperSite(web.BaseSite):
    """A TCP listener for the helper's runner that caps the connections per client address.

    aiohttp has no such cap: each accepted connection passes a gate that counts the server's
    open connections from the same address and turns one over the cap away (429, closed).
    """

    __slots__ = ("_host", "_per_client", "_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, per_client: int) -> None:
        super().__init__(runner)
        self._host, self._port, self._per_client = host, port, per_client

    @property
    def name(self) -> str:
        """The listener's URL."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port (the one asked for, before ``start``)."""
        if self._server is not None:
            sockets = getattr(self._server, "sockets", None)
            if sockets:
                return int(sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        """Listen."""
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Gate(server, self._per_client), self._host, self._port
        )
