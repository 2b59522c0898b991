"""The helper's SNI replay listener: TLS for any name, bytes sent and sunk on request.

Probes time transfers here with a throttled service's name in the ClientHello and with an
innocuous one, interleaved (measurements.replay has the wire protocol and the probe's side).
Nothing here looks at the name: one self-signed certificate, made at start-up, answers every
ClientHello, and its SHA-256 is announced in ``GET /v1/health`` so probes can pin it.

Bounded like the rest of the helper: the request line must come within ``read_timeout``, a
transfer is at most protocol.MAX_TRANSFER_BYTES and MAX_TRANSFER_SECONDS, at most
``MAX_CONNECTIONS`` transfers run at once, and every byte, sent or sunk, is paid for from the
helper's hourly byte budget (the one its throughput tests use). A helper with a token wants it
in the request line (inside TLS, so only the helper reads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import os
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from measurements.replay import (
    FILLER,
    MAX_LINE,
    ReplayError,
    ReplayRequest,
    encode,
)
from measurements.sampling import Sampler, sampled
from probe.helper.limits import HourlyBudget
from probe.helper.protocol import MAX_TRANSFER_BYTES, MAX_TRANSFER_SECONDS

MAX_CONNECTIONS = 8
# Bytes per write, so per TLS record: a record is readable only when whole, so 16 KiB records
# through a 130 kbit/s policer arrive one a second, too coarse for 100 ms samples to time.
RECORD = 4096
_GRACE = 5.0  # seconds past a transfer's own limit before its connection is dropped


def self_signed() -> tuple[ssl.SSLContext, str]:
    """A server context with a fresh self-signed certificate, and that certificate's SHA-256."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe helper SNI replay")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # ssl loads a chain only from a file: a private one, gone as soon as it is read.
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
    return ctx, hashlib.sha256(der).hexdigest()


class ReplayListener:
    """Serves replay transfers on one TLS listener."""

    def __init__(self, budget: HourlyBudget, token: str | None, read_timeout: float = 5.0) -> None:
        self.context, self.certificate_sha256 = self_signed()
        self.budget = budget
        self.token = token
        self.read_timeout = read_timeout
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self.server: asyncio.Server | None = None
        self._transfers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int | None:
        """The bound port, once listening."""
        if self.server is None or not self.server.sockets:
            return None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        """Listen (raises OSError when the address cannot be bound)."""
        self.server = await asyncio.start_server(
            self._serve, host, port, ssl=self.context,
            ssl_handshake_timeout=self.read_timeout,
        )  # fmt: skip

    async def close(self) -> None:
        """Stop listening and end the transfers in progress."""
        if self.server is not None:
            self.server.close()
        for task in self._transfers:
            task.cancel()
        if self._transfers:
            await asyncio.wait(self._transfers, timeout=self.read_timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._transfers.add(task)
        try:
            await self._serve_one(reader, writer)
        finally:
            self._transfers.discard(task)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.slots.locked():
            writer.write(encode({"error": "too many replay transfers at once: try later"}))
            await _close(writer)
            return
        async with self.slots:
            try:
                await self._transfer(reader, writer)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass  # the probe went away, or was too slow: nothing to answer
            finally:
                await _close(writer)

    async def _transfer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(self.read_timeout):
            line = await reader.readuntil(b"\n")
        try:
            if len(line) > MAX_LINE:
                raise ReplayError(f"the request line is over {MAX_LINE} bytes")
            req = ReplayRequest.parse(
                line, max_bytes=MAX_TRANSFER_BYTES, max_seconds=MAX_TRANSFER_SECONDS
            )
            self._authorise(req)
        except ReplayError as exc:
            writer.write(encode({"error": str(exc)}))
            return
        if not self.budget.reserve(req.size):
            writer.write(encode({"error": "this helper's hourly transfer budget is spent"}))
            return
        moved = 0
        try:
            async with asyncio.timeout(req.seconds + _GRACE):
                writer.write(encode({"ok": True}))
                if req.direction == "down":
                    moved = await _send(writer, req)
                else:
                    moved = await _sink(reader, writer, req)
        finally:
            self.budget.settle(req.size, moved)

    def _authorise(self, req: ReplayRequest) -> None:
        if self.token is None:
            return
        given = (req.token or "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self.token.encode("utf-8", "surrogateescape")):
            raise ReplayError("token: this helper needs its token")


async def _send(writer: asyncio.StreamWriter, req: ReplayRequest) -> int:
    """Write the bytes asked for until the probe lets go; return how many were written.

    The probe's read window starts when "go" reaches it, which a policer's queue can delay by
    seconds: a helper that stopped at its own ``seconds`` left the probe's last seconds empty,
    and the rate read over them came out a third low. So the probe ends the transfer (it
    closes when its time is up), and ``seconds`` plus a grace is only the helper's bound.
    """
    sent = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(req.seconds + _GRACE / 2):
            while sent < req.size:
                piece = FILLER[: min(RECORD, req.size - sent)]
                writer.write(piece)
                sent += len(piece)
                await writer.drain()
    return sent


async def _sink(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: ReplayRequest
) -> int:
    """Read what the probe sends, sampled on the grid it asked for, then report the samples."""
    # Timed from the first byte that arrives, not from "go": a policer's queue may hold "go"
    # back for seconds, and the probe sends nothing before it has it.
    sampler = Sampler()
    stopped = "seconds"
    chunk = b""

    async def read() -> None:
        nonlocal stopped, chunk
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(req.seconds + _GRACE / 2):  # for the first byte
                chunk = await reader.read(65536)
                sampler.add(min(len(chunk), req.size))
            # ``seconds`` from the first byte: about when the probe stops sending.
            async with asyncio.timeout_at(loop.time() + req.seconds):
                while chunk and sampler.count < req.size:
                    chunk = await reader.read(65536)
                    sampler.add(min(len(chunk), req.size - sampler.count))
        if not chunk:
            stopped = "end"
        elif sampler.count >= req.size:
            stopped = "bytes"

    await sampled(sampler, req.every, read())
    report = {
        "received": sampler.count,
        "first_byte_ms": sampler.first_byte_ms,
        "samples": [list(s) for s in sampler.samples],
        "stopped": stopped,
    }
    writer.write(encode(report))
    await writer.drain()
    return sampler.count


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        async with asyncio.timeout(2.0):
            await writer.wait_closed()
