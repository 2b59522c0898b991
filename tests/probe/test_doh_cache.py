"""DoHCache against real local DoH servers: one lookup per name, one TLS handshake per server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import trustme

from probe.engine.doh import DOH_CONNECTIONS, DoHCache
from tests.servers.dns_server import Answer, Delay, ServFail, Silent
from tests.servers.doh_server import DoHServer

NAMES = [f"n{i}.test" for i in range(30)]


def _address(i: int) -> str:
    return f"192.0.2.{i + 1}"


async def test_many_names_share_one_handshake(ca: trustme.CA, ca_bundle: str) -> None:
    """30 names asked at once, each twice: 30 queries, over a few kept-alive connections."""
    async with DoHServer(ca) as server:
        for i, name in enumerate(NAMES):
            server.set(name, Answer(_address(i)))
        cache = DoHCache((server.url,), ca_bundle, 5.0)
        try:
            answers = await asyncio.gather(*(cache.lookup(n) for n in NAMES + NAMES))
        finally:
            await cache.aclose()
        assert server.handshakes <= DOH_CONNECTIONS
    for i, name in enumerate(NAMES):
        assert server.script.queries[name] == 1
        (obs,) = answers[i]
        assert obs.failure is None, obs.error
        assert obs.addresses == (_address(i),)
        assert answers[i + len(NAMES)] == answers[i]


async def test_a_failing_server_then_the_next_each_pay_one_handshake(
    ca: trustme.CA, ca_bundle: str
) -> None:
    """The first server fails every name, so each is asked of the second: a few handshakes
    each, never one per name."""
    async with DoHServer(ca) as first, DoHServer(ca) as second:
        for i, name in enumerate(NAMES):
            first.set(name, ServFail())
            second.set(name, Answer(_address(i)))
        cache = DoHCache((first.url, second.url), ca_bundle, 5.0)
        try:
            answers = await asyncio.gather(*(cache.lookup(n) for n in NAMES))
        finally:
            await cache.aclose()
        assert first.handshakes <= DOH_CONNECTIONS and second.handshakes <= DOH_CONNECTIONS
    for i, name in enumerate(NAMES):
        assert first.script.queries[name] == second.script.queries[name] == 1
        failed, answered = answers[i]
        assert failed.failure == "dns_servfail_error" and failed.rcode == "SERVFAIL"
        assert answered.addresses == (_address(i),)


async def test_a_silent_server_does_not_queue_its_timeouts(ca: trustme.CA, ca_bundle: str) -> None:
    """Once a server stops answering, names are no longer asked one at a time."""
    names = NAMES[:10]
    async with DoHServer(ca) as server:
        for name in names:
            server.set(name, Silent())
        cache = DoHCache((server.url,), ca_bundle, 0.5)
        start = time.monotonic()
        try:
            answers = await asyncio.gather(*(cache.lookup(n) for n in names))
        finally:
            await cache.aclose()
        elapsed = time.monotonic() - start
    assert all(obs.failure == "generic_timeout_error" for (obs,) in answers)
    # One timeout alone, then the other nine together: about 1 s, where a queue takes 5 s.
    assert elapsed < 2.5


async def test_a_slow_server_is_not_queued_past_a_query_timeout(
    ca: trustme.CA, ca_bundle: str
) -> None:
    """Names that waited a query timeout for the shared connection are asked on their own."""
    names = NAMES[:10]
    async with DoHServer(ca) as server:
        for i, name in enumerate(names):
            server.set(name, Delay(0.3, Answer(_address(i))))
        cache = DoHCache((server.url,), ca_bundle, 0.5)
        start = time.monotonic()
        try:
            answers = await asyncio.gather(*(cache.lookup(n) for n in names))
        finally:
            await cache.aclose()
        elapsed = time.monotonic() - start
        # One at a time would take 3 s and time out nothing; the overflow costs handshakes.
        assert server.handshakes > 1
    assert [obs.addresses for (obs,) in answers] == [(_address(i),) for i in range(len(names))]
    assert elapsed < 2.0


async def test_a_new_client_after_aclose(ca: trustme.CA, ca_bundle: str) -> None:
    """aclose ends the shared client: a later lookup opens (and pays for) a new connection."""
    async with DoHServer(ca) as server:
        server.set("a.test", Answer(_address(0)))
        server.set("b.test", Answer(_address(1)))
        cache = DoHCache((server.url,), ca_bundle, 5.0)
        try:
            await cache.lookup("a.test")
            await cache.aclose()
            (obs,) = await cache.lookup("b.test")
        finally:
            await cache.aclose()
        assert obs.addresses == (_address(1),)
        assert server.handshakes == 2


async def test_aclose_cancels_lookups_no_input_waits_for(ca: trustme.CA, ca_bundle: str) -> None:
    """A sweep that stops mid-lookup leaves no lookup running into the closed client."""
    async with DoHServer(ca) as server:
        server.set("void.test", Silent())
        server.set("queued.test", Answer(_address(0)))
        cache = DoHCache((server.url,), ca_bundle, 5.0)
        inputs = [asyncio.ensure_future(cache.lookup(n)) for n in ("void.test", "queued.test")]
        await asyncio.sleep(0.2)  # one lookup on the wire, the other waiting for its turn
        for task in inputs:
            task.cancel()  # the sweep's inputs end first; the shielded lookups run on
        start = time.monotonic()
        await cache.aclose()
        assert time.monotonic() - start < 1.0  # not the 5 s timeout of the silent lookup
        await asyncio.sleep(0)
        lookups = [t for t in asyncio.all_tasks() if "DoHCache._lookup" in repr(t.get_coro())]
        assert lookups == []
        (obs,) = await cache.lookup("queued.test")  # cancelled, so not cached: asked anew
        await cache.aclose()
        assert obs.addresses == (_address(0),)


async def test_a_connection_the_server_closed_is_not_reused(ca: trustme.CA, ca_bundle: str) -> None:
    """The server went away and came back on its port: the kept connection it closed is
    dropped and a new one made, rather than the next name failing on the old one."""
    async with DoHServer(ca) as first:
        first.set("a.test", Answer(_address(0)))
        cache = DoHCache((first.url,), ca_bundle, 5.0)
        (before,) = await cache.lookup("a.test")
        port = first.port
    try:
        async with DoHServer(ca, port=port) as second:
            second.set("b.test", Answer(_address(1)))
            (after,) = await cache.lookup("b.test")
    finally:
        await cache.aclose()
    assert before.failure is None, before.error
    assert after.failure is None, after.error
    assert after.addresses == (_address(1),)
    assert second.handshakes == 1


def test_the_probe_loads_no_second_http_stack() -> None:
    """dnspython's own DoH stack (httpx2, httpcore2) stays unloaded, even where installed."""
    code = (
        "import sys, probe.cli, probe.engine.doh, measurements.dns, dns.asyncquery, dns.resolver;"
        "print([m for m in sys.modules if m.split('.')[0] in ('httpx2', 'httpcore2')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
