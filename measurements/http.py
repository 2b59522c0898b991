"""HTTP measurement: a GET sent to a chosen address, its redirects followed hop by hop.

Each hop is one exchange on a connection of its own (measurements.http1), so the URL's host
is the Host header and the SNI while the connection goes to an address the caller chose
(never a system lookup). Redirects are followed here, so that every hop is recorded, every
next address comes from the caller's ``resolve`` and passes ``allow_address`` before anything
is sent to it.

Timings are marked by the exchange under httpcore's trace names (the throughput test's httpx
stream gives the same through its ``trace`` extension), which also say how far an exchange
got when it failed: the failure's ``operation``.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import httpx

from measurements.addresses import canonical_address, is_ip
from measurements.certificates import summarize
from measurements.failures import Failure, describe, failure_of, malformed
from measurements.http1 import Exchange, browser_headers
from measurements.observations import Certificate, HTTPHop, HTTPObservation, HTTPTimings
from measurements.trust import context_async

DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
)
HEAD_BYTES = 8 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_TITLE_CHARS = 256

Resolve = Callable[[str], Awaitable[str | None]]
AllowAddress = Callable[[str], str | None]
# A redirect's hop to another host than the first URL's waits for a turn at that host: the
# per-host limit holds for the hosts redirects lead to, not only for the inputs' own.
HopTurn = Callable[[str], AbstractAsyncContextManager[None]]


class _Trace:
    """httpcore's trace callback: when each step happened since the hop started."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.marks: dict[str, float] = {}

    def elapsed(self) -> float:
        return (time.monotonic() - self.start) * 1000.0

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        self.mark(name.split(".", 1)[-1])

    def mark(self, name: str) -> None:
        """Note when ``name`` ("connect_tcp.complete", ...) first happened."""
        self.marks.setdefault(name, self.elapsed())

    def _span(self, step: str) -> float | None:
        started = self.marks.get(f"{step}.started")
        complete = self.marks.get(f"{step}.complete")
        return None if started is None or complete is None else complete - started

    def operation(self, https: bool) -> str:
        """Where an exchange that failed now had got to."""
        if "connect_tcp.complete" not in self.marks:
            return "connect"
        if https and "start_tls.complete" not in self.marks:
            return "tls_handshake"
        if "receive_response_headers.complete" not in self.marks:
            return "http_request"
        return "http_body"

    def timings(self, total_ms: float) -> HTTPTimings:
        """Connect and TLS as durations; first byte and total as times since the hop began."""
        return HTTPTimings(
            connect_ms=self._span("connect_tcp"),
            tls_ms=self._span("start_tls"),
            first_byte_ms=self.marks.get("receive_response_headers.complete"),
            total_ms=total_ms,
        )


class _Received:
    """What came back so far; kept when the exchange breaks off midway."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: tuple[tuple[str, str], ...] = ()
        self.location: str | None = None
        self.charset: str | None = None
        self.tls_version: str | None = None
        self.certificate: Certificate | None = None
        self.length: int | None = None
        self.digest = hashlib.sha256()
        self.head = bytearray()
        self.truncated = False

    def take_headers(
        self, response: httpx.Response, url: httpx.URL, ssl_object: ssl.SSLObject | None
    ) -> None:
        """The status and headers (decoded as httpx decodes them), and the TLS session's."""
        self.status = response.status_code
        self.headers = tuple(response.headers.multi_items())
        self.charset = response.charset_encoding
        location = response.headers.get("location")
        if response.status_code in REDIRECT_STATUSES and location:
            try:
                self.location = str(url.join(location))
            except httpx.InvalidURL:
                self.location = None  # the raw value stays in headers
        if ssl_object is not None:
            self.tls_version = ssl_object.version()
            der = ssl_object.getpeercert(binary_form=True)
            try:
                self.certificate = summarize(der) if der else None
            except ValueError:  # OpenSSL took it (unverified) but cryptography cannot parse it
                self.certificate = None

    def take(self, chunk: bytes) -> None:
        self.length = (self.length or 0) + len(chunk)
        self.digest.update(chunk)
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]

    async def read_body(
        self, response: httpx.Response, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> None:
        self.length = 0
        declared = response.headers.get("content-length")
        declared_length = int(declared) if declared and declared.isdigit() else None
        # Raw bytes, as they came: we ask for identity encoding, and never inflate a body
        # (a small compressed body can expand past any cap).
        async for chunk in chunks:
            room = max_bytes - self.length
            if len(chunk) > room:
                self.take(chunk[:room])
                self.truncated = True
                return
            self.take(chunk)
            # At the cap exactly: a declared length says whether more follows; without one,
            # the next chunk (or the end of the body) does.
            if self.length == max_bytes and declared_length is not None:
                self.truncated = declared_length > max_bytes
                return

    def title(self) -> str | None:
        found = _TITLE.search(bytes(self.head))
        if found is None:
            return None
        try:
            text = found.group(1).decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            text = found.group(1).decode("utf-8", errors="replace")
        return " ".join(html.unescape(text).split())[:_TITLE_CHARS]


def _refused_hop(url: str, ip: str | None, reason: str) -> HTTPHop:
    return HTTPHop(
        url=url,
        ip=ip,
        failure=None,
        operation=None,
        status=None,
        headers=(),
        location=None,
        title=None,
        body_length=None,
        body_sha256=None,
        body_head=b"",
        truncated=False,
        tls_version=None,
        certificate=None,
        timings=HTTPTimings(),
        refused=reason,
    )


@dataclass(frozen=True, slots=True)
class _Broken:
    """How an exchange broke off: the failure, how far it had got, and what it was."""

    failure: Failure
    operation: str
    error: str | None  # the exception's description, for a failure of no known kind
    malformed: bool  # the peer answered with something that is not HTTP


def _broken(
    exc: BaseException, trace: _Trace, https: bool, received: _Received, above_tls: int
) -> _Broken:
    """What broke the exchange off, read from the exception and what had come back."""
    failure = failure_of(exc)
    # A peer that sent bytes no response could be parsed from, then closed, answered
    # with something that is not HTTP (a TLS alert to plain HTTP, binary junk).
    bad_answer = malformed(exc) or (
        failure is Failure.EOF and received.status is None and above_tls > 0
    )
    return _Broken(
        failure=failure,
        operation=trace.operation(https),
        error=describe(exc) if failure is Failure.UNKNOWN else None,
        malformed=bad_answer,
    )


async def _hop(
    url: str,
    ip: str,
    *,
    seconds: float,
    context: ssl.SSLContext,
    max_bytes: int,
    agent: str,
    ranged: bool = False,
) -> HTTPHop:
    """One GET to ``ip``, read up to ``max_bytes``; network errors become the hop's failure.

    A connection of its own (measurements.http1), closed after: no connection or TLS session
    is ever reused between hops, inputs or controls.
    """
    target = httpx.URL(url)
    https = target.scheme == "https"
    trace = _Trace()
    received = _Received()
    broken: _Broken | None = None
    headers = browser_headers(target, agent, max_bytes if ranged else None)
    port = target.port or (443 if https else 80)
    # httpcore's SNI and checked name: the URL's host (an address literal sends no SNI).
    tls = (context, target.raw_host.decode("ascii")) if https else None
    exchange = Exchange(ip, port, tls, trace.mark)
    try:
        async with asyncio.timeout(seconds):
            try:
                await exchange.open()
                status, raw_headers = await exchange.request(target.raw_path, headers)
                response = httpx.Response(status, headers=raw_headers)
                received.take_headers(response, target, exchange.ssl_object)
                await received.read_body(response, exchange.body(), max_bytes)
            finally:
                exchange.close()
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        broken = _broken(exc, trace, https, received, exchange.received)
    return _hop_record(url, ip, received, broken, trace.timings(trace.elapsed()))


def _hop_record(
    url: str, ip: str, received: _Received, broken: _Broken | None, timings: HTTPTimings
) -> HTTPHop:
    """The hop as recorded: what was received, and how the exchange broke off if it did."""
    return HTTPHop(
        url=url,
        ip=ip,
        failure=broken.failure.value if broken is not None else None,
        operation=broken.operation if broken is not None else None,
        status=received.status,
        headers=received.headers,
        location=received.location,
        title=received.title(),
        body_length=received.length,
        body_sha256=received.digest.hexdigest() if received.length is not None else None,
        body_head=bytes(received.head),
        truncated=received.truncated,
        tls_version=received.tls_version,
        certificate=received.certificate,
        timings=timings,
        error=broken.error if broken is not None else None,
        malformed=broken.malformed if broken is not None else False,
    )


async def _address_for(
    host: str, known: dict[str, str | None], resolve: Resolve | None, seconds: float
) -> str | None:
    """The address for a redirect's host: a literal, standardised; a known host; else resolve."""
    if is_ip(host):  # "0x7f.1" is an address to any connector: judged, never resolved
        return canonical_address(host) or host  # "010.1" (8.0.0.1 or 10.0.0.1) as written
    key = host.lower()
    if key not in known:
        address = None
        if resolve is not None:
            try:
                async with asyncio.timeout(seconds):
                    address = await resolve(host)
            except TimeoutError:
                address = None
        known[key] = address
    return known[key]


async def fetch(
    url: str,
    ip: str,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 (see measurements.tcp.connect)
    ca_bundle: str | None = None,
    verify: bool = True,
    max_bytes: int = 1 << 20,
    max_redirects: int = 5,
    resolve: Resolve | None = None,
    allow_address: AllowAddress | None = None,
    user_agent: str = DEFAULT_USER_AGENT,
    ranged: bool = False,
    hop_turn: HopTurn | None = None,
) -> HTTPObservation:
    """GET ``url`` from ``ip`` (its host as Host and SNI) and follow redirects, hop by hop.

    ``hop_turn(host)`` is entered around each hop to a host other than the first URL's (the
    hop's own timeout starts once it has its turn).

    ``ranged`` asks each hop for no more than ``max_bytes`` (a ``Range`` header): for a large
    resource of which only the first bytes matter, so the server does not fill the link (and
    a throttle's queue) with bytes the probe will not read. The answer is then 206.
    """
    started = time.monotonic()
    first = httpx.URL(url)
    if first.scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    context = await context_async(ca_bundle, verify=verify)

    first_host = first.host.lower()

    async def visit(hop_url: str, hop_ip: str) -> HTTPHop:
        host = httpx.URL(hop_url).host.lower()
        turn = hop_turn(host) if hop_turn is not None and host != first_host else nullcontext()
        async with turn:
            return await _hop(
                hop_url,
                hop_ip,
                seconds=timeout,
                context=context,
                max_bytes=max_bytes,
                agent=user_agent,
                ranged=ranged,
            )

    known: dict[str, str | None] = {first_host: ip}

    async def address_for(host: str) -> str | None:
        return await _address_for(host, known, resolve, timeout)

    hops = await _follow(url, ip, visit, address_for, allow_address, max_redirects)
    return HTTPObservation(
        url=url, hops=tuple(hops), duration_ms=(time.monotonic() - started) * 1000.0
    )


async def _follow(
    url: str,
    ip: str,
    visit: Callable[[str, str], Awaitable[HTTPHop]],
    address_for: Resolve,
    allow_address: AllowAddress | None,
    max_redirects: int,
) -> list[HTTPHop]:
    """Visit ``url`` at ``ip``, then each redirect at ``address_for`` its host, if allowed."""
    hops: list[HTTPHop] = []
    next_url: str = url
    next_ip: str | None = ip
    for _ in range(max_redirects + 1):
        if next_ip is None:
            reason = f"no address for {httpx.URL(next_url).host}"
            hops.append(_refused_hop(next_url, None, reason))
            break
        refused = allow_address(next_ip) if allow_address is not None else None
        if refused is not None:  # checked before any packet is sent to it
            hops.append(_refused_hop(next_url, next_ip, refused))
            break
        hop = await visit(next_url, next_ip)
        hops.append(hop)
        redirect = _redirect(hop)
        if redirect is None:
            break
        location, following = redirect
        if following.port is not None and not 0 < following.port < 65536:
            # No connector takes it (anyio raises OverflowError from a task group).
            hops.append(_refused_hop(location, None, f"port {following.port} out of range"))
            break
        next_url = location
        next_ip = await address_for(following.host)
    return hops


def _redirect(hop: HTTPHop) -> tuple[str, httpx.URL] | None:
    """Where the hop redirects to, raw and parsed, if it is an http(s) URL to fetch next."""
    if hop.failure is not None or hop.location is None:
        return None
    following = httpx.URL(hop.location)
    if following.scheme not in ("http", "https"):
        return None  # the location is recorded; nothing else to fetch
    return hop.location, following
