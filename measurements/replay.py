"""SNI replay: bytes timed to and from the control helper's TLS listener under a chosen SNI.

A censor that throttles by the name in the ClientHello slows any connection that names it,
whatever the address (the policers of Russia's 2021 throttling did; a study measured them by
replaying the ClientHello to its own server). So the probe opens TLS to the helper's replay
listener, which presents one self-signed certificate for every name, naming the target (or an
innocuous name), and the helper sends or sinks a requested number of bytes. Same server, same
path, same time: only the name differs between the two.

The wire protocol, one connection per transfer, after the handshake::

    probe  -> {"v": 1, "token": T, "direction": "down"|"up", "bytes": N, "seconds": S,
               "every": E}\\n                                   (one line, at most 1 KiB)
    helper -> {"v": 1, "ok": true}\\n   or   {"v": 1, "error": "..."}\\n and close
    down:  helper -> N bytes (or what S seconds allow), then close
    up:    probe  -> bytes until N, S seconds, or the helper's report
           helper -> {"v": 1, "received": n, "first_byte_ms": f, "samples": [[ms, n], ...]}\\n

An upload is timed where it arrives: the sender's clock sees its own socket buffer fill, not
the path (hence also a small send buffer, so that little is left queued behind a throttle
when the time is up). The token travels inside TLS; the probe pins the helper's certificate
(its SHA-256, from the helper's health answer) so an interceptor cannot collect it.
Observations are ThroughputObservations: ``status`` 200 once the helper accepted, the
``operation`` names of an HTTP transfer ("http_request" up to the helper's answer,
"http_body" for the bytes), ``verified`` False (no name is ever the helper's).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from measurements.failures import Failure, describe, failure_of
from measurements.observations import ThroughputObservation
from measurements.sampling import Sampler, sampled
from measurements.tcp import open_socket

VERSION = 1
MAX_LINE = 1024
MAX_REPORT = 256 * 1024  # the helper's report of an upload: its samples
# Bytes per write when uploading, so per TLS record: a record is readable (and counted by
# the helper) only when whole, and 16 KiB ones through a 256 kbit/s policer came half a
# second apart, too coarse for 100 ms samples.
CHUNK = 4 * 1024
# What an upload may leave queued in the kernel when its time is up: the path, not the
# buffer, is what is timed, and a throttled line drains 64 KiB at 130 kbit/s in 4 s.
SEND_BUFFER = 64 * 1024
FILLER = bytes(range(256)) * (16 * 1024 // 256)


class ReplayError(ValueError):
    """A replay message that breaks the protocol (the text says which field)."""


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """One transfer the probe asks of the helper's replay listener."""

    direction: str  # "down" or "up"
    size: int  # bytes
    seconds: float
    every: float = 0.1  # the sampling interval (the helper samples an upload)
    token: str | None = None

    def line(self) -> bytes:
        """The request as sent."""
        body = {"v": VERSION, "token": self.token, "direction": self.direction,
                "bytes": self.size, "seconds": self.seconds, "every": self.every}  # fmt: skip
        return json.dumps(body).encode() + b"\n"

    @classmethod
    def parse(cls, line: bytes, *, max_bytes: int, max_seconds: float) -> ReplayRequest:
        """The request a line carries, within the listener's bounds; ReplayError otherwise."""
        body = _json_line(line)
        direction = body.get("direction")
        if direction not in ("down", "up"):
            raise ReplayError('direction: must be "down" or "up"')
        n: Any = body.get("bytes")
        seconds: Any = body.get("seconds")
        every: Any = body.get("every", 0.1)
        if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= max_bytes:
            raise ReplayError(f"bytes: must be an integer from 1 to {max_bytes}")
        if not _number(seconds) or not 0 < seconds <= max_seconds:
            raise ReplayError(f"seconds: must be a number above 0, at most {max_seconds:g}")
        if not _number(every) or not 0.01 <= every <= 1.0:
            raise ReplayError("every: must be a number from 0.01 to 1")
        token = body.get("token")
        if token is not None and not isinstance(token, str):
            raise ReplayError("token: must be a string or null")
        return cls(direction, n, float(seconds), float(every), token)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_line(line: bytes) -> dict[str, Any]:
    try:
        body = json.loads(line)
    except (ValueError, RecursionError):
        raise ReplayError("not a JSON line") from None
    if not isinstance(body, dict):
        raise ReplayError("not a JSON object")
    if body.get("v") != VERSION:
        raise ReplayError(f"v: this side speaks version {VERSION}")
    return body


def encode(message: dict[str, Any]) -> bytes:
    """A message of the helper's, versioned, as one line."""
    return json.dumps({"v": VERSION, **message}, separators=(",", ":")).encode() + b"\n"


@dataclass
class _Transfer:
    """How far one replay transfer got (filled in as it goes)."""

    sampler: Sampler
    operation: str = "connect"
    status: int | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    certificate: str | None = None  # SHA-256 of the helper's leaf, as presented
    stopped: str | None = None


async def replay(
    ip: str,
    port: int,
    sni: str,
    request: ReplayRequest,
    *,
    pin_sha256: str | None = None,
    connect_timeout: float = 10.0,
) -> ThroughputObservation:
    """One transfer to or from the helper's replay listener, the ClientHello naming ``sni``."""
    if request.direction not in ("down", "up"):
        raise ValueError(f"direction: {request.direction!r}")
    t = _Transfer(Sampler())
    failure: Failure | None = None
    error: str | None = None
    deadline = asyncio.get_running_loop().time() + connect_timeout + request.seconds + 5.0
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await _connect(ip, port, sni, t, connect_timeout)
            try:
                await _exchange(reader, writer, request, t, pin_sha256)
            finally:
                writer.close()
    except (OSError, TimeoutError, ReplayError, asyncio.IncompleteReadError,
            asyncio.LimitOverrunError) as exc:  # fmt: skip
        failure, error = _failure(exc)
    return _observation(ip, port, sni, request, t, failure, error)


def _failure(exc: BaseException) -> tuple[Failure, str | None]:
    """The failure of a transfer that broke, and its description where the kind says little."""
    if isinstance(exc, _PinMismatch):
        return Failure.SSL_INVALID_CERTIFICATE, str(exc)
    if isinstance(exc, asyncio.IncompleteReadError):
        return Failure.EOF, None  # the helper closed before its answer was whole
    found = failure_of(exc)
    plain = found is Failure.UNKNOWN or isinstance(exc, ReplayError)
    return found, describe(exc) if plain else None


class _PinMismatch(ssl.SSLError):
    """The listener presented another certificate than the helper announced."""


async def _connect(
    ip: str, port: int, sni: str, t: _Transfer, wait: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    started = time.monotonic()
    async with asyncio.timeout(wait):
        sock = await open_socket(ip, port)
    t.connect_ms = (time.monotonic() - started) * 1000.0
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    t.operation = "tls_handshake"
    started = time.monotonic()
    try:
        # Our own deadline, not asyncio's handshake timeout: that one aborts the transport and
        # reads as a reset (connection_reset where the handshake was only slow).
        async with asyncio.timeout(wait):
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=_client_context(), server_hostname=sni,
                ssl_handshake_timeout=wait + 5.0,
            )  # fmt: skip
    except BaseException:
        sock.close()
        raise
    t.tls_ms = (time.monotonic() - started) * 1000.0
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    t.certificate = hashlib.sha256(der).hexdigest() if der else None
    return reader, writer


_CONTEXT: ssl.SSLContext | None = None


def _client_context() -> ssl.SSLContext:
    """No name is the helper's, so nothing is verified here; the pin is checked after."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _CONTEXT = ctx
    return _CONTEXT


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: ReplayRequest,
    t: _Transfer,
    pin: str | None,
) -> None:
    if pin is not None and t.certificate != pin.lower():
        raise _PinMismatch("the replay listener's certificate is not the one the helper announced")
    t.operation = "http_request"
    t.sampler.start = time.monotonic()  # times count from the request, like an HTTP transfer
    writer.write(request.line())
    answer = _json_line(await reader.readuntil(b"\n"))
    if answer.get("ok") is not True:
        raise ReplayError(f"the helper refused: {answer.get('error', 'no reason given')}")
    t.status, t.operation = 200, "http_body"
    if request.direction == "down":
        t.sampler.first_byte_ms = round(t.sampler.elapsed(), 1)  # "go": the body starts
        await _download(reader, request, t)
    else:
        await _upload(reader, writer, request, t)


async def _download(reader: asyncio.StreamReader, request: ReplayRequest, t: _Transfer) -> None:
    s = t.sampler

    async def read() -> None:
        try:
            async with asyncio.timeout(request.seconds):
                while s.count < request.size:
                    chunk = await reader.read(65536)
                    if not chunk:
                        t.stopped = "end"
                        return
                    s.add(min(len(chunk), request.size - s.count))
                t.stopped = "bytes"
        except TimeoutError:
            t.stopped = "seconds"  # the time budget ended the read: the expected way to stop

    await sampled(s, request.every, read())


async def _upload(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: ReplayRequest,
    t: _Transfer,
) -> None:
    """Send until the bytes or the time are spent or the helper reports; its samples count."""
    report = asyncio.ensure_future(reader.readuntil(b"\n"))
    loop = asyncio.get_running_loop()
    end = loop.time() + request.seconds
    sent = 0
    try:
        while sent < request.size and not report.done() and loop.time() < end:
            piece = FILLER[: min(CHUNK, request.size - sent)]
            writer.write(piece)
            sent += len(piece)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(end):
                    await writer.drain()
        # What is still queued arrives within the helper's own time limit, or not at all.
        async with asyncio.timeout(request.seconds + 5.0):
            line = await asyncio.shield(report)
    finally:
        if not report.done():
            report.cancel()
            await asyncio.wait([report])
    _take_report(_json_line(line), request, t)


def _take_report(body: dict[str, Any], request: ReplayRequest, t: _Transfer) -> None:
    """The helper's samples of an upload, checked before they become the observation's."""
    samples = body.get("samples")
    received, first = body.get("received"), body.get("first_byte_ms")
    if not isinstance(received, int) or not 0 <= received <= request.size:
        raise ReplayError("received: must be an integer from 0 to the bytes asked for")
    if first is not None and not _number(first):
        raise ReplayError("first_byte_ms: must be a number or null")
    if not isinstance(samples, list) or len(samples) > 100_000:
        raise ReplayError("samples: must be a list")
    clean: list[tuple[float, int]] = []
    for item in samples:
        if not (isinstance(item, list) and len(item) == 2 and _number(item[0])
                and isinstance(item[1], int)):  # fmt: skip
            raise ReplayError("samples: each must be [ms, bytes]")
        clean.append((float(item[0]), int(item[1])))
    s = t.sampler
    s.count, s.first_byte_ms, s.samples = received, first, clean
    t.stopped = body.get("stopped") if body.get("stopped") in ("bytes", "seconds", "end") else None


def _observation(
    ip: str,
    port: int,
    sni: str,
    request: ReplayRequest,
    t: _Transfer,
    failure: Failure | None,
    error: str | None,
) -> ThroughputObservation:
    s = t.sampler
    duration = s.elapsed()
    last = s.samples[-1][0] if s.samples else None
    goodput = (
        s.count * 8 / max(last - s.first_byte_ms, 1.0)
        if s.count and s.first_byte_ms is not None and last is not None
        else None
    )
    host = f"[{ip}]" if ":" in ip else ip
    return ThroughputObservation(
        url=f"replay://{host}:{port}/{request.direction}", ip=ip, sni=sni, verified=False,
        failure=failure.value if failure is not None else None,
        operation=t.operation if failure is not None else None, status=t.status,
        connect_ms=t.connect_ms, tls_ms=t.tls_ms, first_byte_ms=s.first_byte_ms,
        samples=tuple(s.samples), bytes=s.count, duration_ms=duration, goodput_kbps=goodput,
        stopped=t.stopped, error=error, direction=request.direction,
    )  # fmt: skip
