"""SNI replay against the helper's real TLS listener on 127.0.0.1: both directions, bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from measurements.replay import ReplayRequest, replay
from probe.helper.limits import HourlyBudget
from probe.helper.replay import ReplayListener

LOOPBACK = "127.0.0.1"


@pytest.fixture
async def listener() -> AsyncIterator[ReplayListener]:
    server = ReplayListener(HourlyBudget(64 << 20), token="s3cret", read_timeout=5.0)
    await server.start(LOOPBACK, 0)
    try:
        yield server
    finally:
        await server.close()


def _req(direction: str, n: int = 256 * 1024, seconds: float = 10.0, token: str = "s3cret"):
    return ReplayRequest(direction, n, seconds, every=0.05, token=token)


async def test_a_download_under_any_name_brings_the_bytes_asked_for(
    listener: ReplayListener,
) -> None:
    assert listener.port is not None
    for sni in ("www.facebook.com", "example.org"):
        obs = await replay(
            LOOPBACK, listener.port, sni, _req("down"), pin_sha256=listener.certificate_sha256
        )
        assert obs.failure is None, obs.error
        assert (obs.bytes, obs.stopped, obs.status) == (256 * 1024, "bytes", 200)
        assert obs.sni == sni and obs.direction == "down" and not obs.verified
        assert obs.samples[-1][1] == obs.bytes and obs.goodput_kbps


async def test_an_upload_is_timed_by_the_receiver(listener: ReplayListener) -> None:
    assert listener.port is not None
    obs = await replay(LOOPBACK, listener.port, "t.me", _req("up"))
    assert obs.failure is None, obs.error
    assert (obs.bytes, obs.direction, obs.stopped) == (256 * 1024, "up", "bytes")
    assert obs.first_byte_ms is not None and obs.samples and obs.samples[-1][1] == obs.bytes


async def test_the_time_limit_ends_a_transfer_without_failing_it(
    listener: ReplayListener,
) -> None:
    assert listener.port is not None
    # 8 MiB in 0.05 s is more than loopback can carry under a test's load: time ends it.
    obs = await replay(LOOPBACK, listener.port, "x.com", _req("down", 8 << 20, 0.05))
    assert obs.failure is None and obs.stopped in ("seconds", "bytes")
    assert 0 < obs.bytes <= 8 << 20


async def test_the_wrong_token_is_refused_in_words(listener: ReplayListener) -> None:
    assert listener.port is not None
    obs = await replay(LOOPBACK, listener.port, "x.com", _req("down", token="guess"))
    assert obs.failure == "unknown_failure" and obs.bytes == 0
    assert obs.error is not None and "token" in obs.error


async def test_another_certificate_than_the_pinned_one_gets_no_token(
    listener: ReplayListener,
) -> None:
    assert listener.port is not None
    obs = await replay(LOOPBACK, listener.port, "x.com", _req("down"), pin_sha256="00" * 32)
    assert obs.failure == "ssl_invalid_certificate" and obs.operation == "tls_handshake"
    assert obs.bytes == 0


async def test_a_spent_budget_is_refused() -> None:
    server = ReplayListener(HourlyBudget(100_000), token=None)
    await server.start(LOOPBACK, 0)
    try:
        assert server.port is not None
        obs = await replay(LOOPBACK, server.port, "x.com", _req("down", 200_000, token=""))
        assert obs.failure == "unknown_failure" and obs.error and "budget" in obs.error
    finally:
        await server.close()


async def test_a_silent_client_is_dropped_within_the_read_timeout() -> None:
    server = ReplayListener(HourlyBudget(1 << 20), token=None, read_timeout=0.5)
    await server.start(LOOPBACK, 0)
    try:
        assert server.port is not None
        reader, writer = await asyncio.open_connection(LOOPBACK, server.port)
        # No ClientHello at all: the handshake timeout closes the connection.
        async with asyncio.timeout(10):
            assert await reader.read() == b""
        writer.close()
    finally:
        await server.close()


async def test_nothing_listening_is_a_refused_connection() -> None:
    obs = await replay(LOOPBACK, 9, "x.com", _req("down"), connect_timeout=2.0)
    assert obs.failure == "connection_refused" and obs.operation == "connect"
