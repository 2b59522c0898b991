"""The collector's HTTP side: ``POST /v1/uploads``, ``DELETE /v1/uploads``, ``GET /v1/health``.

Each upload passes, in this order and before any byte of it is stored: the cap on uploads
in flight (503 and Retry-After), the token (401: missing, unknown or revoked), the token's
rate (429 and Retry-After), the body's size as sent (413) and its read deadline (408: a
client trickling its body is cut off), its size once decompressed (413), and the format
(400, naming the field: wire.py). It is answered 200 only after its transaction committed;
a database that cannot be reached is 503 with Retry-After, so the probe keeps its outbox
and tries again. Every answer is JSON: ``{"error": ..., "field": ...}`` or the counts.

No access log, and nothing here reads the peer's address: the collector never stores or
logs where an upload came from (a reverse proxy in front must be told the same: README).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from probe.collector import ingest, tokens, wire
from probe.collector.limits import InFlight, TokenRate, retry_after
from probe.store.database import Database
from probe.store.errors import StoreError

T = TypeVar("T")
HEALTH_PATH = "/v1/health"
TOKEN_TTL = 5.0  # seconds a checked token is trusted before it is checked again


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """How much the collector accepts, how fast, and how many at once."""

    max_body: int = 8 << 20  # bytes as sent (compressed)
    max_decompressed: int = 64 << 20
    max_items: int = 10_000  # measurements (and runs) per upload
    rate: float = 5.0  # uploads per second per token, sustained
    burst: int = 20
    concurrency: int = 32  # uploads handled at once (each holds a database connection)
    read_timeout: float = 30.0  # seconds to send a whole body


class _Refusal(Exception):
    def __init__(self, status: int, error: str, field: str | None = None, **headers: str):
        super().__init__(error)
        self.status, self.error, self.field, self.headers = status, error, field, headers


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


class _Collector:
    def __init__(self, db: Database, settings: ServeSettings) -> None:
        self.db = db
        self.settings = settings
        self.rate = TokenRate(settings.rate, settings.burst)
        self.in_flight = InFlight(settings.concurrency)
        self.known: dict[str, tuple[str, float]] = {}  # token -> (holder, when checked)
        # The store is synchronous (SQLAlchemy): its calls leave the event loop.
        self.pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="collector-db")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(fn, *args))

    async def guarded(
        self, request: web.Request, handle: Callable[[web.Request, str], Awaitable[web.Response]]
    ) -> web.Response:
        """The cap, the token and its rate; then ``handle``; refusals as JSON."""
        if not self.in_flight.enter():
            return _json(503, {"error": "too many uploads at once"}, {"Retry-After": "1"})
        try:
            name = await self._holder(request)
            wait = self.rate.take(name)
            if wait > 0:
                raise _Refusal(
                    429, "too many uploads for this token", **{"Retry-After": retry_after(wait)}
                )
            return await handle(request, name)
        except _Refusal as r:
            body = {"error": r.error} | ({"field": r.field} if r.field else {})
            return _json(r.status, body, r.headers or None)
        except StoreError as exc:
            print(f"probe collector: {exc}", file=sys.stderr)
            return _json(503, {"error": "the database is unavailable"}, {"Retry-After": "2"})
        finally:
            self.in_flight.leave()

    async def _holder(self, request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Refusal(401, "an Authorization: Bearer TOKEN header is required")
        name = await self._lookup(token.strip())
        if name is None:
            raise _Refusal(401, "unknown or revoked token")
        return name

    async def _lookup(self, token: str) -> str | None:
        """The token's holder, remembered for TOKEN_TTL seconds (a database round trip per
        upload otherwise); so a revocation takes effect within that long."""
        now = time.monotonic()
        cached = self.known.get(token)
        if cached is not None and now - cached[1] < TOKEN_TTL:
            return cached[0]
        name = await self.call(tokens.holder, self.db, token)
        if len(self.known) > 10_000:
            self.known.clear()  # bounded: only live tokens are remembered anyway
        if name is not None:
            self.known[token] = (name, now)
        return name

    async def upload(self, request: web.Request, name: str) -> web.Response:
        document = await self._document(request)
        try:
            upload = wire.parse(document, self.settings.max_items)
        except wire.WireError as exc:
            raise _Refusal(400, str(exc), exc.field) from None
        stored = await self.call(ingest.store, self.db, name, upload)
        return _json(200, {"stored": stored.inserted, "duplicates": stored.duplicates})

    async def _document(self, request: web.Request) -> Any:
        if (request.content_length or 0) > self.settings.max_body:
            raise _Refusal(413, f"the body is over {self.settings.max_body} bytes")
        try:
            async with asyncio.timeout(self.settings.read_timeout):
                body = await request.read()  # client_max_size bounds it too
        except TimeoutError:
            raise _Refusal(408, f"the body took over {self.settings.read_timeout:g} s") from None
        except web.HTTPRequestEntityTooLarge:
            raise _Refusal(413, f"the body is over {self.settings.max_body} bytes") from None
        try:
            encoding = request.headers.get("Content-Encoding", "")
            return wire.decode(body, encoding, self.settings.max_decompressed)
        except wire.TooLarge as exc:
            raise _Refusal(413, str(exc)) from None
        except wire.WireError as exc:
            status = 415 if exc.field == "Content-Encoding" else 400
            raise _Refusal(status, str(exc), exc.field) from None

    async def delete(self, request: web.Request, name: str) -> web.Response:
        gone = await self.call(ingest.delete_mine, self.db, name)
        return _json(200, {"deleted": gone})


def make_app(db: Database, settings: ServeSettings) -> web.Application:
    """The collector's web application (the database stays the caller's)."""
    collector = _Collector(db, settings)
    app = web.Application(client_max_size=settings.max_body)

    async def post(request: web.Request) -> web.Response:
        return await collector.guarded(request, collector.upload)

    async def delete(request: web.Request) -> web.Response:
        return await collector.guarded(request, collector.delete)

    async def health(_: web.Request) -> web.Response:
        return _json(200, {"ok": True})

    async def stop_pool(_: web.Application) -> None:
        collector.pool.shutdown(wait=False)

    app.router.add_post(wire.PATH, post)
    app.router.add_delete(wire.PATH, delete)
    app.router.add_get(HEALTH_PATH, health)
    app.on_cleanup.append(stop_pool)
    return app


async def serve(db: Database, host: str, port: int, settings: ServeSettings) -> None:
    """Serve until cancelled."""
    runner = web.AppRunner(
        make_app(db, settings),
        access_log=None,  # an access log would name every uploader's address
        keepalive_timeout=settings.read_timeout,
        lingering_time=0,  # after a 413 or 408, close at once rather than read the rest
        # The body is inflated here (wire.decode), bounded: client_max_size then bounds the
        # bytes as sent, and a small body that inflates to gigabytes is a 413.
        auto_decompress=False,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        shown = f"[{host}]" if ":" in host else host
        print(f"probe collector listening on http://{shown}:{port}{wire.PATH}", file=sys.stderr)
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
