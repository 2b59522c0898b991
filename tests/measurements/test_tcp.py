"""measurements.tcp against real loopback peers: a listener, a closed port, a blackhole."""

from __future__ import annotations

import asyncio

import pytest

from measurements.failures import Failure
from measurements.tcp import connect
from tests.servers.tcp_servers import ClosedPort, DroppingPort, SilentListener

LOOPBACK = "127.0.0.1"


async def test_connect_ok(silent_listener: SilentListener) -> None:
    obs = await connect(LOOPBACK, silent_listener.port, timeout=2.0)
    assert obs.failure is None
    assert obs.error is None
    assert (obs.ip, obs.port) == (LOOPBACK, silent_listener.port)
    assert obs.connect_ms is not None
    assert 0 <= obs.connect_ms <= obs.duration_ms < 2000


async def test_connect_closes_the_socket(silent_listener: SilentListener) -> None:
    await connect(LOOPBACK, silent_listener.port, timeout=2.0)
    # The silent peer reads until EOF (or 30 s): it finishes only if connect() closed.
    async with asyncio.timeout(2.0):
        await silent_listener.wait_finished(1)
    assert silent_listener.accepted == 1


async def test_refused(closed_port: ClosedPort) -> None:
    obs = await connect(LOOPBACK, closed_port.port, timeout=2.0)
    assert obs.failure == Failure.CONNECTION_REFUSED
    assert obs.connect_ms is None
    assert obs.duration_ms < 2000
    assert obs.error is None


async def test_dropped_syn_times_out(dropping_port: DroppingPort) -> None:
    obs = await connect(LOOPBACK, dropping_port.port, timeout=0.5)
    assert obs.failure == Failure.GENERIC_TIMEOUT
    assert obs.connect_ms is None
    # It waited for the timeout (not refused at once), and no longer than a little past it.
    assert 450 <= obs.duration_ms < 1500


async def test_dropping_port_is_not_a_closed_port() -> None:
    # The blackhole stays a blackhole for a second client: the accept queue stays full.
    async with DroppingPort() as peer:
        first, second = await asyncio.gather(
            connect(LOOPBACK, peer.port, timeout=0.4), connect(LOOPBACK, peer.port, timeout=0.4)
        )
    assert first.failure == second.failure == Failure.GENERIC_TIMEOUT


@pytest.mark.parametrize("address", ["localhost", "example.test", ""])
async def test_hostname_is_refused_before_any_traffic(address: str) -> None:
    with pytest.raises(ValueError):
        await connect(address, 80, timeout=0.5)
