"""measurements.throughput against a real local resource, direct or behind a local policer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trustme

from measurements.http import fetch
from measurements.throughput import download
from tests.servers.tcp_servers import ClosedPort, ResetAfterFirstData, SilentListener
from tests.servers.throughput_server import ByteServer, Pacer

LOCAL = "127.0.0.1"
NAME = "cdn.example.test"
INNOCUOUS = "www.example.com"
RATE = 100_000  # bytes/s


@pytest.fixture
async def origin(ca: trustme.CA) -> AsyncIterator[ByteServer]:
    async with ByteServer(ca, [NAME]) as server:
        yield server


def _url(port: int, size: int = 4_000_000) -> str:
    return f"https://{NAME}:{port}/bytes/{size}"


async def test_fast_download_stops_at_its_byte_budget(origin: ByteServer, ca_bundle: str) -> None:
    obs = await download(
        _url(origin.port), LOCAL, ca_bundle=ca_bundle, max_bytes=200_000, max_seconds=5,
        sample_every=0.01,
    )  # fmt: skip
    assert obs.failure is None and obs.operation is None and obs.status == 206
    assert (obs.bytes, obs.stopped) == (200_000, "bytes")
    assert obs.sni == NAME and obs.verified is True and obs.url == _url(origin.port)
    assert origin.ranges == ["bytes=0-199999"]  # the server was asked for no more
    assert obs.connect_ms is not None and obs.tls_ms is not None and obs.first_byte_ms is not None
    assert 0 < obs.first_byte_ms < obs.duration_ms < 5000
    times = [t for t, _ in obs.samples]
    counts = [b for _, b in obs.samples]
    assert times == sorted(times) and counts == sorted(counts) and counts[-1] == 200_000
    assert obs.goodput_kbps is not None and obs.goodput_kbps > 10_000


async def test_a_short_body_ends_the_read(origin: ByteServer, ca_bundle: str) -> None:
    obs = await download(
        _url(origin.port, 5000), LOCAL, ca_bundle=ca_bundle, max_bytes=100_000, max_seconds=5
    )
    assert (obs.failure, obs.status, obs.bytes, obs.stopped) == (None, 206, 5000, "end")


async def test_paced_download_stops_at_its_time_budget_with_the_paced_rate(
    origin: ByteServer, ca_bundle: str
) -> None:
    async with Pacer(origin.port, rate=RATE) as pacer:
        obs = await download(
            _url(pacer.port), LOCAL, ca_bundle=ca_bundle, max_bytes=1_000_000, max_seconds=1.0,
            sample_every=0.05,
        )  # fmt: skip
    assert obs.failure is None and obs.stopped == "seconds"
    assert 1000 <= obs.duration_ms < 1300
    assert obs.goodput_kbps is not None
    assert 0.7 * RATE * 8 / 1000 <= obs.goodput_kbps <= 1.2 * RATE * 8 / 1000
    # A sample every 50 ms from the headers on, and the last count at the end.
    assert 15 <= len(obs.samples) <= 21
    assert obs.samples[-1][1] == obs.bytes


async def test_innocuous_sni_on_the_same_address(origin: ByteServer, ca_bundle: str) -> None:
    async with Pacer(origin.port, rate=RATE, names={NAME}) as censor:
        obs = await download(
            _url(censor.port), LOCAL, sni=INNOCUOUS, verify=False, max_bytes=200_000,
            max_seconds=5,
        )  # fmt: skip
        checked = await download(
            _url(censor.port), LOCAL, sni=INNOCUOUS, ca_bundle=ca_bundle, max_bytes=200_000,
            max_seconds=5,
        )  # fmt: skip
    assert obs.failure is None and (obs.bytes, obs.stopped) == (200_000, "bytes")
    assert obs.sni == INNOCUOUS and obs.verified is False
    # The censor saw the innocuous name, never the target's (the Host header is encrypted),
    # so it let the transfer through at full speed.
    seen = censor.connections[0]
    assert INNOCUOUS.encode() in seen.hello and NAME.encode() not in seen.hello
    assert not seen.paced
    # With the check on, the certificate (for the real name) does not match the innocuous one.
    assert (checked.failure, checked.operation) == ("ssl_invalid_hostname", "tls_handshake")
    assert checked.bytes == 0 and checked.goodput_kbps is None and checked.samples == ()


@pytest.mark.parametrize(
    ("peer", "failure", "operation"),
    [
        (ClosedPort, "connection_refused", "connect"),
        (ResetAfterFirstData, "connection_reset", "tls_handshake"),
        (SilentListener, "generic_timeout_error", "tls_handshake"),
    ],
)
async def test_failures_are_data(
    peer: type[ClosedPort | ResetAfterFirstData | SilentListener],
    failure: str,
    operation: str,
    ca_bundle: str,
) -> None:
    async with peer() as server:
        obs = await download(
            _url(server.port), LOCAL, ca_bundle=ca_bundle, max_bytes=10_000, max_seconds=0.5
        )
    assert (obs.failure, obs.operation, obs.status, obs.stopped) == (failure, operation, None, None)
    assert obs.bytes == 0 and obs.samples == () and obs.goodput_kbps is None
    assert obs.duration_ms < 1500  # the time budget bounds a silent peer too


async def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        await download("ftp://x.test/", LOCAL, max_bytes=1, max_seconds=1)
    with pytest.raises(ValueError, match="positive"):
        await download("https://x.test/", LOCAL, max_bytes=0, max_seconds=1)


async def test_a_ranged_page_fetch_asks_for_no_more_than_it_reads(
    origin: ByteServer, ca_bundle: str
) -> None:
    # The ordinary measurement of a throughput URL: its status and first bytes only.
    whole = await fetch(_url(origin.port), LOCAL, ca_bundle=ca_bundle, max_bytes=16_384)
    part = await fetch(_url(origin.port), LOCAL, ca_bundle=ca_bundle, max_bytes=16_384, ranged=True)
    assert origin.ranges == [None, "bytes=0-16383"]
    assert (whole.final.status, whole.final.truncated) == (200, True)
    assert (part.final.status, part.final.body_length, part.final.truncated) == (206, 16_384, False)
