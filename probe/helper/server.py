"""The control helper: measures an input from an uncensored network when a probe asks.

It answers two questions, one per request (the messages are probe.helper.protocol's):

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

- ``GET /v1/whoami``: where is the asker? Its AS number, the AS's name and its country, from
  an IP-to-ASN database the operator installed (``asn_db``, ``country_db``: MaxMind-format
  files, measurements.geoip). The answer never holds the address, and the helper logs none
  (no access log). Without a database: 501 and why. A probe asks once per sweep, to record
  where it measured without storing (or even knowing) its public address.

With ``replay_listen`` set, the helper also serves probes' SNI replay on a TLS listener of its
own (probe.helper.replay), its bytes paid from the same hourly budget.

The helper applies the same address policy as the probe, so it can never be used to reach a
private network; requests are bounded in size, time, bytes and concurrency. A throughput
request makes the helper download up to 40 MiB from an address of the asker's choosing, so
the bytes it downloads are capped per hour (``throughput_bytes_per_hour``), and a helper
reachable from the internet should require a token (``token``: every request but the health
check carries ``Authorization: Bearer TOKEN``).

Checks and transfers never queue behind each other: checks have their own bound
(``concurrency``), transfers their own turn (one at a time). A client must send its request
(headers, then body) within ``read_timeout`` seconds each, and one client address may hold at
most ``per_client_connections`` connections (``HelperSite``, probe.helper.limits), so slow or
many connections cannot hold the helper. Every request the helper cannot read gets a JSON
``{"version": 1, "error": ...}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from measurements import dns, http, tcp, throughput, tls
from measurements.addresses import Network, address_problem, canonical_address, is_ip
from measurements.geoip import GeoIP
from measurements.observations import DNSObservation, ThroughputObservation
from probe.helper.limits import HelperSite, HourlyBudget
from probe.helper.protocol import (
    MAX_REQUEST_BYTES,
    CheckReport,
    CheckRequest,
    ErrorBody,
    Health,
    ProtocolError,
    ThroughputReport,
    ThroughputRequest,
    Whoami,
)
from probe.helper.replay import ReplayListener
from probe.helper.whoami import locate
from targets.model import UrlTarget, parse_input


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
    replay_listen: tuple[str, int] | None = None  # the SNI replay listener's address
    replay_public_port: int | None = None  # the port announced, when a forward moves it
    geoip: GeoIP | None = None  # the IP-to-ASN/country database(s) whoami reads, opened


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


# ------------------------------------------------------------------ what may be measured


def _measurable(address: str, settings: HelperSettings) -> str:
    """The address in its standard spelling, or BadRequest when it is not to be measured."""
    problem = address_problem(address, settings.routable)
    if problem is not None:
        raise BadRequest(f"address {address} is {problem}: not measured")
    return canonical_address(address) or address  # "0x7f.1" is 127.0.0.1 from here on


def parse_check(body: Any, settings: HelperSettings) -> CheckRequest:
    """A CheckRequest from a request body whose address may be measured, or BadRequest."""
    try:
        req = CheckRequest.from_json(body)
    except ProtocolError as exc:
        raise BadRequest(str(exc)) from None
    return dataclasses.replace(req, address=_measurable(req.address, settings))


def parse_throughput(body: Any, settings: HelperSettings) -> ThroughputRequest:
    """A ThroughputRequest from a request body whose address may be measured, or BadRequest."""
    try:
        req = ThroughputRequest.from_json(body)
    except ProtocolError as exc:
        raise BadRequest(str(exc)) from None
    return dataclasses.replace(req, address=_measurable(req.address, settings))


# ------------------------------------------------------------------ measuring


def _target(text: str) -> tuple[str, str | None, int]:
    """(host, scheme, port) of a checked input; scheme None for a bare endpoint."""
    # The probe's own parser: the helper reads an input exactly as the probe's loader did.
    target = parse_input("url" if "://" in text else "endpoint", text)
    scheme = target.scheme if isinstance(target, UrlTarget) else None
    return target.host, scheme, target.port


async def _lookup(name: str, s: HelperSettings) -> DNSObservation:
    if s.resolver:
        return await dns.query_udp(name, s.resolver, timeout=s.timeout)
    return await dns.query_system(name, timeout=s.timeout)


async def check(req: CheckRequest, settings: HelperSettings) -> CheckReport:
    """Measure one input at one address from here."""
    s = settings
    host, scheme, port = _target(req.input)
    addresses = () if is_ip(host) else (await _lookup(host, s)).addresses
    connected = await tcp.connect(req.address, port, timeout=s.timeout)
    report = CheckReport(addresses=addresses, tcp_ok=connected.failure is None)
    if scheme is None or connected.failure is not None:
        return report
    tls_valid = None
    if scheme == "https":
        shake = await tls.handshake(
            req.address, port, host, timeout=s.timeout, ca_bundle=s.ca_bundle
        )
        tls_valid = shake.failure is None and bool(shake.cert_valid)
        if not tls_valid:
            return CheckReport(addresses, True, tls_valid)
    return await _page(req, s, addresses, tls_valid)


async def _page(
    req: CheckRequest, s: HelperSettings, addresses: tuple[str, ...], tls_valid: bool | None
) -> CheckReport:
    """The report with the page the URL gives here (redirects followed, policy applied)."""

    def allow(ip: str) -> str | None:
        problem = address_problem(ip, s.routable)
        return f"{ip} is a {problem} address" if problem else None

    async def resolve(name: str) -> str | None:
        found = await _lookup(name, s)
        return found.addresses[0] if found.addresses else None

    page = await http.fetch(
        req.input, req.address, timeout=s.timeout * 2, ca_bundle=s.ca_bundle, resolve=resolve,
        allow_address=allow,
    )  # fmt: skip
    final = page.final
    return CheckReport(
        addresses=addresses,
        tcp_ok=True,
        tls_valid=tls_valid,
        status=final.status,
        title=final.title,
        body_length=final.body_length,
        final_host=(urlsplit(final.url).hostname or "").lower() if final.status else None,
        first_byte_ms=page.hops[0].timings.first_byte_ms,
    )


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


# ------------------------------------------------------------------ the web application

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REPLAY: web.AppKey[ReplayListener | None] = web.AppKey("replay")


def _error(message: str, status: int) -> web.Response:
    return web.json_response(ErrorBody(message).to_json(), status=status)


class _Helper:
    """The application's handlers and middlewares, and the bounds they share."""

    def __init__(self, settings: HelperSettings) -> None:
        self.settings = settings
        # Separate bounds: a check never waits behind a transfer. Transfers used to take a
        # slot of the checks' semaphore while waiting for their turn, so queued transfers
        # starved checks.
        self.checks = asyncio.Semaphore(settings.concurrency)
        self.one_transfer_at_a_time = asyncio.Lock()
        self.budget = HourlyBudget(settings.throughput_bytes_per_hour)
        self.expected = f"Bearer {settings.token}".encode() if settings.token else None
        # Its bytes come out of the same hourly budget as the helper's own downloads.
        self.replay = (
            ReplayListener(self.budget, settings.token, settings.read_timeout)
            if settings.replay_listen is not None
            else None
        )

    @web.middleware
    async def authorise(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Turn away a request without the token (the health check needs none)."""
        if self.expected is not None and request.path != Health.PATH:
            # Header bytes that are not UTF-8 arrive as surrogates: encode them back as sent.
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, self.expected):  # constant time: no guessing
                return _error("this helper needs its token (Authorization: Bearer ...)", 401)
        return await handler(request)

    @web.middleware
    async def json_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """aiohttp's own refusals (404, 405, 413 on a long chunked body) as JSON errors too."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error(exc.reason, exc.status)

    async def read_json(self, request: web.Request) -> Any:
        """The request's JSON body, read within the read timeout; BadRequest otherwise."""
        if request.content_type != "application/json":
            raise BadRequest("expected Content-Type: application/json")
        if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
            raise TooLarge("request too large")
        try:
            async with asyncio.timeout(self.settings.read_timeout):
                raw = await request.read()  # all of it (client_max_size bounds it)
        except TimeoutError:
            raise Refused("request body too slow", 408) from None
        except web.RequestPayloadError:  # a broken chunked body, a gzip body that is not
            raise BadRequest("the request body cannot be read") from None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise BadRequest("not JSON") from None

    async def handle_check(self, request: web.Request) -> web.Response:
        """POST /v1/check."""
        try:
            req = parse_check(await self.read_json(request), self.settings)
            # The wait for a slot counts against the check's time: a check queued too long
            # is refused rather than answered after the probe gave up.
            async with asyncio.timeout(self.settings.timeout * 6):
                async with self.checks:
                    report = await check(req, self.settings)
        except BadRequest as exc:
            return _error(str(exc), exc.status)
        except TimeoutError:
            return _error("check timed out", 504)
        return web.json_response(report.to_json())

    async def handle_throughput(self, request: web.Request) -> web.Response:
        """POST /v1/throughput."""
        try:
            req = parse_throughput(await self.read_json(request), self.settings)
            transfers = await self._timed(req)
        except BadRequest as exc:
            return _error(str(exc), exc.status)
        except TimeoutError:
            return _error("the helper was busy: try later", 503)
        return web.json_response(ThroughputReport(transfers).to_json())

    async def _timed(self, req: ThroughputRequest) -> tuple[ThroughputObservation, ...]:
        """The request's transfers in their turn, paid for from the hourly budget."""
        if self.settings.throughput_bytes_per_hour == 0:
            raise Refused("this helper times no transfers")
        asked = req.trials * req.max_bytes
        if not self.budget.reserve(asked):
            raise Refused("this helper's hourly transfer budget is spent: try later", 429)
        transfers: tuple[ThroughputObservation, ...] = ()
        try:
            async with asyncio.timeout(req.time_limit):
                async with self.one_transfer_at_a_time:
                    transfers = await time_transfers(req, self.settings)
        finally:
            self.budget.settle(asked, sum(t.bytes for t in transfers))
        return transfers

    async def whoami(self, request: web.Request) -> web.Response:
        """GET /v1/whoami."""
        if self.settings.geoip is None:
            return _error(
                "this helper has no IP-to-ASN database (helper.asn_db, helper.country_db)", 501
            )
        answer = locate(request.remote, self.settings.geoip, self.settings.routable)
        return web.json_response(answer.to_json())

    async def health(self, _: web.Request) -> web.Response:
        """GET /v1/health."""
        replay = self.replay
        if replay is None or replay.port is None:
            return web.json_response(Health().to_json())
        port = self.settings.replay_public_port or replay.port
        return web.json_response(Health(True, port, replay.certificate_sha256).to_json())


def make_app(settings: HelperSettings) -> web.Application:
    """The helper's web application."""
    helper = _Helper(settings)
    app = web.Application(
        client_max_size=MAX_REQUEST_BYTES, middlewares=[helper.json_errors, helper.authorise]
    )
    app.router.add_post(CheckRequest.PATH, helper.handle_check)
    app.router.add_post(ThroughputRequest.PATH, helper.handle_throughput)
    app.router.add_get(Health.PATH, helper.health)
    app.router.add_get(Whoami.PATH, helper.whoami)
    app[REPLAY] = helper.replay
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


async def serve(host: str, port: int, settings: HelperSettings, ready: asyncio.Event) -> None:
    """Serve until cancelled."""
    runner = make_runner(settings)
    await runner.setup()
    replay = runner.app[REPLAY]
    try:
        await HelperSite(runner, host, port, settings.per_client_connections).start()
        if replay is not None and settings.replay_listen is not None:
            await replay.start(*settings.replay_listen)
        ready.set()
        await asyncio.Event().wait()
    finally:
        if replay is not None:
            await replay.close()
        await runner.cleanup()
