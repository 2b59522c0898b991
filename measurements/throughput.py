"""Throughput measurement: one timed download pinned to an address, its progress sampled.

One GET through measurements.pinned: the URL's host is the Host header, and the TLS SNI
unless ``sni`` names another (the innocuous-SNI control asks for the same resource of the
same address while the ClientHello names something no censor cares about). The address is
the caller's; nothing is resolved, and no redirect is followed: the caller measures the
resource's final URL.

The body is read until ``max_bytes`` or ``max_seconds`` (counted from the start, connect and
handshake included), whichever comes first; a ``Range`` header asks the server for no more
than that, so a fast link does not keep receiving what the probe will not read (a
volunteer's metered line pays for every byte). A sampler task notes the body bytes received
so far every ``sample_every`` seconds from the response headers on, so an analysis can see
the rate change within one transfer.

Running out of time or bytes is how a download ends, not a failure: ``failure`` is set only
when the exchange broke (a reset, a failed handshake, headers that never came in time).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import httpx

from measurements.failures import Failure, describe, failure_of
from measurements.http import DEFAULT_USER_AGENT
from measurements.http import _Trace as Trace  # the same trace hooks as the page fetch
from measurements.observations import ThroughputObservation
from measurements.pinned import PinnedTransport
from measurements.sampling import Sampler, sampled
from measurements.trust import context_async

# Below this a body duration is timer noise; a transfer that fast is "faster than we can tell".
_MIN_BODY_MS = 1.0


class _Progress:
    """Status, the body's sampler and how the read ended (shared with the sampler task)."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.status: int | None = None
        self.body = Sampler(trace.elapsed)  # on the trace's clock: ms since the request
        self.stop_ms: float | None = None
        self.stopped: str | None = None


def _goodput(received: int, first_byte_ms: float | None, stop_ms: float | None) -> float | None:
    """Body kilobits per second from the response headers to the end of the read."""
    if received <= 0 or first_byte_ms is None or stop_ms is None:
        return None
    return received * 8 / max(stop_ms - first_byte_ms, _MIN_BODY_MS)  # bytes*8/ms = kbit/s


async def download(
    url: str,
    ip: str,
    *,
    sni: str | None = None,
    verify: bool = True,
    ca_bundle: str | None = None,
    max_bytes: int,
    max_seconds: float,
    sample_every: float = 0.1,
    user_agent: str = DEFAULT_USER_AGENT,
) -> ThroughputObservation:
    """GET ``url`` from ``ip`` and time its body, up to ``max_bytes`` or ``max_seconds``."""
    target = httpx.URL(url)
    if target.scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    if max_bytes < 1 or max_seconds <= 0 or sample_every <= 0:
        raise ValueError("max_bytes, max_seconds and sample_every must be positive")
    https = target.scheme == "https"
    host = target.raw_host.decode("ascii")
    context = await context_async(ca_bundle, verify=verify)
    progress = _Progress(Trace())
    extensions: dict[str, object] = {"trace": progress.trace}
    if https and sni is not None:
        extensions["sni_hostname"] = sni  # httpcore's own hook; Host stays the URL's
    headers = {
        "User-Agent": user_agent,
        "Accept": "*/*",
        "Accept-Encoding": "identity",
        "Range": f"bytes=0-{max_bytes - 1}",
    }
    broken = await _timed_get(
        target, ip, context, extensions, headers, progress,
        max_bytes=max_bytes, max_seconds=max_seconds, sample_every=sample_every,
    )  # fmt: skip
    return _record(url, ip, (sni or host) if https else None, verify, progress, broken)


@dataclass(frozen=True, slots=True)
class _Broken:
    """How the exchange broke: the failure, how far it had got, and what it was."""

    failure: Failure
    operation: str
    error: str | None = None  # the exception's description, for a failure of no known kind


async def _timed_get(
    target: httpx.URL,
    ip: str,
    context: ssl.SSLContext,
    extensions: dict[str, object],
    headers: dict[str, str],
    progress: _Progress,
    *,
    max_bytes: int,
    max_seconds: float,
    sample_every: float,
) -> _Broken | None:
    """The GET and its body read, all within ``max_seconds``; how it broke, if it did."""
    https = target.scheme == "https"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    try:
        async with asyncio.timeout_at(deadline):
            transport = PinnedTransport(target.raw_host.decode("ascii"), ip, context)
            # trust_env=False: a proxy from the environment would bypass the pinned address.
            # httpx's own timeout is a backstop only; the deadline above is what ends a read.
            async with httpx.AsyncClient(
                transport=transport, trust_env=False, timeout=max_seconds + 1.0, headers=headers
            ) as client:
                request = client.build_request("GET", target, extensions=extensions)
                response = await client.send(request, stream=True)
                progress.status = response.status_code
                await _read_body(response, progress, max_bytes, sample_every)
    except TimeoutError as exc:
        if progress.status is not None and loop.time() >= deadline:
            progress.stopped = "seconds"  # the time budget ended the read: the expected way to stop
            return None
        return _Broken(failure_of(exc), progress.trace.operation(https))
    except (httpx.HTTPError, OSError) as exc:
        failure = failure_of(exc)
        error = describe(exc) if failure is Failure.UNKNOWN else None
        return _Broken(failure, progress.trace.operation(https), error)
    return None


async def _read_body(
    response: httpx.Response, progress: _Progress, max_bytes: int, sample_every: float
) -> None:
    """Read the body to its end or ``max_bytes``, sampled meanwhile; close the response."""
    body = progress.body

    async def read() -> None:
        try:
            async for chunk in response.aiter_raw():
                body.count += min(len(chunk), max_bytes - body.count)
                if body.count >= max_bytes:
                    progress.stopped = "bytes"
                    return
            progress.stopped = "end"
        finally:
            progress.stop_ms = progress.trace.elapsed()

    try:
        await sampled(body, sample_every, read())
    finally:
        await response.aclose()


def _record(
    url: str,
    ip: str,
    sni: str | None,
    verified: bool,
    progress: _Progress,
    broken: _Broken | None,
) -> ThroughputObservation:
    """The transfer as recorded, its duration ending now."""
    trace = progress.trace
    duration_ms = trace.elapsed()
    if progress.stop_ms is None:
        progress.stop_ms = duration_ms
    timings = trace.timings(duration_ms)
    return ThroughputObservation(
        url=url,
        ip=ip,
        sni=sni,
        verified=verified,
        failure=broken.failure.value if broken is not None else None,
        operation=broken.operation if broken is not None else None,
        status=progress.status,
        connect_ms=timings.connect_ms,
        tls_ms=timings.tls_ms,
        first_byte_ms=timings.first_byte_ms,
        samples=tuple(progress.body.samples),
        bytes=progress.body.count,
        duration_ms=duration_ms,
        goodput_kbps=_goodput(progress.body.count, timings.first_byte_ms, progress.stop_ms),
        stopped=progress.stopped,
        error=broken.error if broken is not None else None,
    )
