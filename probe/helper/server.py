"""The control helper: measures an input from an uncensored network when a probe asks.

It answers two questions, one per request:

- ``POST /v1/check`` with ``{"input": URL or "host:port", "address": IP}``: does the address
  accept a TCP connection from here, does the name's certificate validate there, and what
  page does the URL give here? The probe compares that with what it saw (docs/architecture.md,
  rule 1: a control that succeeded where the probe failed).
- ``POST /v1/throughput`` with ``{"url", "address", "max_bytes", "max_seconds", "trials"}``:
  how fast does the address give that resource here? ``trials`` timed downloads, one after
  the other (measurements.throughput), returned whole so the probe's reader can re-check them.
  Rule 7 needs it to tell an address slowed on the way to the probe from a server that is
  slow for everyone. One such test runs at a time on the helper (two would measure each
  other); the others wait their turn within the request's time limit.

The helper applies the same address policy as the probe, so it can never be used to reach a
private network; requests are bounded in size, time, bytes and concurrency. A throughput
request makes the helper download up to 40 MiB from an address of the asker's choosing, so
the bytes it downloads are capped per hour (``throughput_bytes_per_hour``), and a helper
reachable from the internet should require a token (``token``: every request but the health
check carries ``Authorization: Bearer TOKEN``).

Checks and transfers never queue behind each other: checks have their own bound
(``concurrency``), transfers their own turn (one at a time). A client must send its request
(headers, then body) within ``read_timeout`` seconds each, and one client address may hold at
most ``per_client_connections`` connections (``HelperSite``), so slow or many connections
cannot hold the helper. Every request the helper cannot read gets a JSON ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from measurements import dns, http, tcp, throughput, tls
from measurements.addresses import Network, address_problem, canonical_address, is_ip
from measurements.observations import ThroughputObservation, to_jsonable
from probe.classify.evidence import HelperReport
from probe.helper.client import transfer_time_limit
from targets.model import Endpoint, url_problem

API_VERSION = 1
_MAX_REQUEST = 4096  # bytes: a check is one short JSON object
# What one throughput request may ask of the helper: its operator's line pays for it.
MAX_TRANSFER_BYTES = 8 << 20
MAX_TRANSFER_SECONDS = 30.0
MAX_TRIALS = 5


@dataclass(frozen=True, slots=True)
class HelperSettings:
    """How the helper measures."""

    resolver: str | None = None  # None: the system's
    ca_bundle: str | None = None
    routable: tuple[Network, ...] = ()
    timeout: float = 5.0
    concurrency: int = 16
    token: str | None = None  # None: anyone who can reach the helper may use it
    throughput_bytes_per_hour: int = 1 << 30  # 0: no throughput tests at all
    # Seconds a client has to send a request's headers (from connecting, or from the last
    # answer on a kept-alive connection), and again its body: a slow-loris ends there.
    read_timeout: float = 5.0
    per_client_connections: int = 32  # connections one client address may hold at once


class BadRequest(ValueError):
    """A check the helper refuses, with the reason sent back (and the HTTP status)."""

    status = 400


class TooLarge(BadRequest):
    """A request body over the size limit."""

    status = 413


class Refused(BadRequest):
    """A well-formed request this helper will not serve (now, or at all)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


def _parse(body: Any, settings: HelperSettings) -> tuple[str, str, str | None, int, str]:
    """(input, host, scheme, port, address) from a request body, or BadRequest."""
    if not isinstance(body, dict) or set(body) - {"input", "address"}:
        raise BadRequest('expected {"input": ..., "address": ...}')
    text, address = body.get("input"), body.get("address")
    if not isinstance(text, str) or not isinstance(address, str) or not is_ip(address):
        raise BadRequest("input must be a string and address an IP address")
    problem = address_problem(address, settings.routable)
    if problem is not None:
        raise BadRequest(f"address {address} is {problem}: not measured")
    address = canonical_address(address) or address  # "0x7f.1" is 127.0.0.1 from here on
    if "://" in text:
        problem = url_problem(text)
        if problem:
            raise BadRequest(problem)
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        return text, (parts.hostname or "").lower(), scheme, port, address
    try:
        endpoint = Endpoint.parse(text)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return text, endpoint.host, None, endpoint.port, address


async def check(body: Any, settings: HelperSettings) -> HelperReport:
    """Measure one input at one address from here."""
    text, host, scheme, port, address = _parse(body, settings)
    s = settings
    addresses: tuple[str, ...] = ()
    if not is_ip(host):
        if s.resolver:
            seen = await dns.query_udp(host, s.resolver, timeout=s.timeout)
        else:
            seen = await dns.query_system(host, timeout=s.timeout)
        addresses = seen.addresses
    connected = await tcp.connect(address, port, timeout=s.timeout)
    report = HelperReport(addresses=addresses, tcp_ok=connected.failure is None)
    if scheme is None or connected.failure is not None:
        return report
    tls_valid = None
    if scheme == "https":
        shake = await tls.handshake(address, port, host, timeout=s.timeout, ca_bundle=s.ca_bundle)
        tls_valid = shake.failure is None and bool(shake.cert_valid)
        if not tls_valid:
            return HelperReport(addresses, True, tls_valid)

    def allow(ip: str) -> str | None:
        problem = address_problem(ip, s.routable)
        return f"{ip} is a {problem} address" if problem else None

    async def resolve(name: str) -> str | None:
        found = await (
            dns.query_udp(name, s.resolver, timeout=s.timeout)
            if s.resolver
            else dns.query_system(name, timeout=s.timeout)
        )
        return found.addresses[0] if found.addresses else None

    page = await http.fetch(
        text, address, timeout=s.timeout * 2, ca_bundle=s.ca_bundle, resolve=resolve,
        allow_address=allow,
    )  # fmt: skip
    final = page.final
    return HelperReport(
        addresses=addresses,
        tcp_ok=True,
        tls_valid=tls_valid,
        status=final.status,
        title=final.title,
        body_length=final.body_length,
        final_host=(urlsplit(final.url).hostname or "").lower() if final.status else None,
        first_byte_ms=page.hops[0].timings.first_byte_ms,
    )


@dataclass(frozen=True, slots=True)
class ThroughputRequest:
    """One throughput test a probe asked for, checked."""

    url: str
    address: str
    max_bytes: int
    max_seconds: float
    trials: int

    @property
    def time_limit(self) -> float:
        """How long the whole test may take, waiting for the helper's turn included."""
        return transfer_time_limit(self.trials, self.max_seconds)


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f"{key} must be a number from {low:g} to {high:g}")
    return float(value)


def parse_throughput(body: Any, settings: HelperSettings) -> ThroughputRequest:
    """A ThroughputRequest from a request body, or BadRequest."""
    keys = {"url", "address", "max_bytes", "max_seconds", "trials"}
    if not isinstance(body, dict) or set(body) != keys:
        raise BadRequest(f"expected an object with exactly {', '.join(sorted(keys))}")
    url, address = body["url"], body["address"]
    if not isinstance(url, str) or not isinstance(address, str) or not is_ip(address):
        raise BadRequest("url must be a string and address an IP address")
    problem = url_problem(url)
    if problem:
        raise BadRequest(problem)
    problem = address_problem(address, settings.routable)
    if problem is not None:
        raise BadRequest(f"address {address} is {problem}: not measured")
    address = canonical_address(address) or address  # "0x7f.1" is 127.0.0.1 from here on
    trials = body["trials"]
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS:
        raise BadRequest(f"trials must be a whole number from 1 to {MAX_TRIALS}")
    return ThroughputRequest(
        url, address, int(_number(body, "max_bytes", 1, MAX_TRANSFER_BYTES)),
        _number(body, "max_seconds", 0.1, MAX_TRANSFER_SECONDS), trials,
    )  # fmt: skip


async def time_transfers(
    req: ThroughputRequest, settings: HelperSettings
) -> tuple[ThroughputObservation, ...]:
    """The requested downloads, one after the other, each within its own budgets."""
    done: list[ThroughputObservation] = []
    for _ in range(req.trials):
        obs = await throughput.download(
            req.url, req.address, ca_bundle=settings.ca_bundle, max_bytes=req.max_bytes,
            max_seconds=req.max_seconds,
        )  # fmt: skip
        done.append(obs)
    return tuple(done)


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


def make_app(settings: HelperSettings) -> web.Application:
    """The helper's web application."""
    # Separate bounds: a check never waits behind a transfer. Transfers used to take a slot
    # of the checks' semaphore while waiting for their turn, so queued transfers starved checks.
    checks = asyncio.Semaphore(settings.concurrency)
    one_transfer_at_a_time = asyncio.Lock()
    budget = HourlyBudget(settings.throughput_bytes_per_hour)
    expected = f"Bearer {settings.token}".encode() if settings.token else None

    @web.middleware
    async def authorise(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if expected is not None and request.path != "/v1/health":
            # Header bytes that are not UTF-8 arrive as surrogates: encode them back as sent.
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):  # constant time: no guessing by timing
                return web.json_response(
                    {"error": "this helper needs its token (Authorization: Bearer ...)"},
                    status=401,
                )
        return await handler(request)

    @web.middleware
    async def json_errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # aiohttp's own refusals (404, 405, 413 on a long chunked body) as JSON errors too.
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return web.json_response({"error": exc.reason}, status=exc.status)

    async def read_json(request: web.Request) -> Any:
        """The request's JSON body, read within the read timeout; BadRequest otherwise."""
        if request.content_type != "application/json":
            raise BadRequest("expected Content-Type: application/json")
        if request.content_length is not None and request.content_length > _MAX_REQUEST:
            raise TooLarge("request too large")
        try:
            async with asyncio.timeout(settings.read_timeout):
                raw = await request.read()  # all of it (client_max_size bounds it)
        except TimeoutError:
            raise Refused("request body too slow", 408) from None
        except web.RequestPayloadError:  # a broken chunked body, a gzip body that is not
            raise BadRequest("the request body cannot be read") from None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise BadRequest("not JSON") from None

    async def handle(request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
            # The wait for a slot counts against the check's time: a check queued too long
            # is refused rather than answered after the probe gave up.
            async with asyncio.timeout(settings.timeout * 6):
                async with checks:
                    report = await check(body, settings)
        except BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        except TimeoutError:
            return web.json_response({"error": "check timed out"}, status=504)
        payload = {"version": API_VERSION, **asdict(report)}
        payload["addresses"] = list(report.addresses)
        return web.json_response(payload)

    async def handle_throughput(request: web.Request) -> web.Response:
        try:
            req = parse_throughput(await read_json(request), settings)
            if settings.throughput_bytes_per_hour == 0:
                raise Refused("this helper times no transfers")
            asked = req.trials * req.max_bytes
            if not budget.reserve(asked):
                raise Refused("this helper's hourly transfer budget is spent: try later", 429)
            transfers: tuple[ThroughputObservation, ...] = ()
            try:
                async with asyncio.timeout(req.time_limit):
                    async with one_transfer_at_a_time:
                        transfers = await time_transfers(req, settings)
            finally:
                budget.settle(asked, sum(t.bytes for t in transfers))
        except BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        except TimeoutError:
            return web.json_response({"error": "the helper was busy: try later"}, status=503)
        payload = {"version": API_VERSION, "transfers": to_jsonable(transfers)}
        return web.json_response(payload)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"version": API_VERSION, "ok": True})

    app = web.Application(client_max_size=_MAX_REQUEST, middlewares=[json_errors, authorise])
    app.router.add_post("/v1/check", handle)
    app.router.add_post("/v1/throughput", handle_throughput)
    app.router.add_get("/v1/health", health)
    return app


def make_runner(settings: HelperSettings) -> web.AppRunner:
    """The helper's application, ready to set up and serve on a ``HelperSite``."""
    return web.AppRunner(
        make_app(settings),
        access_log=None,
        # A probe that lets go (its sweep stopped) wants no answer: its check or transfers stop.
        handler_cancellation=True,
        # aiohttp arms this timer when a connection opens and after each answer, and closes a
        # connection still waiting for a whole request when it fires: the header read timeout
        # (and the idle timeout of a kept-alive connection).
        keepalive_timeout=settings.read_timeout,
        # After an answer sent before the whole body came (413, 408, a broken body) aiohttp
        # would read and drop the rest for 10 s, holding a slow client that much longer (and
        # logging a broken body's error a second time): close at once instead.
        lingering_time=0,
    )


_TOO_MANY = json.dumps({"error": "too many connections from your address"}).encode()
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


async def serve(host: str, port: int, settings: HelperSettings, ready: asyncio.Event) -> None:
    """Serve until cancelled."""
    runner = make_runner(settings)
    await runner.setup()
    try:
        await HelperSite(runner, host, port, settings.per_client_connections).start()
        ready.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
