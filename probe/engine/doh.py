"""DNS-over-HTTPS controls, one lookup per name per sweep however many inputs share it."""

from __future__ import annotations

import asyncio
import time

from measurements import dns, doh, keepalive, trust
from measurements.observations import DNSObservation
from probe.engine import lag

# Connections kept to one DoH server. HTTP/1.1 carries one exchange at a time, so a few let
# a sweep's first burst of names (one per input started, up to limits.concurrency at once)
# go through in a few round trips, while a sweep of any size still pays a few handshakes.
DOH_CONNECTIONS = 8
# Queries asked beside the queue (of a slow or silent server) at once: enough that its
# timeouts overlap, bounded so a sweep of 2,000 names does not open 2,000 connections at once.
DOH_BESIDE = 32
# How far a busy probe may stretch a DoH query's timeout (the lag it excludes), at most.
LAG_ALLOWANCE = 3


class DoHCache:
    """DNS-over-HTTPS answers, one lookup per name per sweep however many inputs share it.

    One set of keep-alive HTTP/1.1 connections (measurements.keepalive) serves every
    lookup, and at most DOH_CONNECTIONS exchanges are in flight to one DoH server at once,
    so a sweep pays that many TLS handshakes per DoH server rather than one per name. A name
    waits for a free connection: the query's timeout starts when it is sent, so the wait
    (however long the probe's own work makes it) never counts as the server's delay. Only a
    server that is itself slow (its last answer took half a query timeout) or stopped
    answering is asked beside the queue, on connections of their own, so its timeouts do not
    queue up behind each other. ``aclose`` closes the connections with the sweep.
    """

    def __init__(self, urls: tuple[str, ...], ca_bundle: str | None, timeout: float) -> None:
        self._urls = urls
        self._ca_bundle = ca_bundle
        self._timeout = timeout
        self._pending: dict[str, asyncio.Task[tuple[DNSObservation, ...]]] = {}
        self._client: keepalive.DoHConnections | None = None
        self._turns = {url: asyncio.Semaphore(DOH_CONNECTIONS) for url in urls}
        self._beside = {url: asyncio.Semaphore(DOH_BESIDE) for url in urls}
        # Servers whose last answer was a DNS message, promptly: a connection is worth
        # waiting for.
        self._answering = set(urls)
        # Servers whose last exchange took more than half a query timeout.
        self._slow: set[str] = set()

    async def _shared_client(self) -> keepalive.DoHConnections:
        # The configured trust anchors, or the system's; built off the loop if not preloaded.
        context = await trust.context_async(self._ca_bundle)
        if self._client is None:  # checked after the await: the first lookups arrive together
            self._client = keepalive.DoHConnections(context)
        return self._client

    async def aclose(self) -> None:
        """Cancel lookups still in flight, then close the shared client and its connections.

        A lookup is shielded from the inputs that wait for it, so one may outlive them all (a
        sweep that failed or was interrupted): left running, it would meet a closed client.
        """
        running = [task for task in self._pending.values() if not task.done()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._pending = {name: t for name, t in self._pending.items() if not t.cancelled()}
        if self._client is not None:
            self._client.close()
            self._client = None

    async def lookup(self, hostname: str) -> tuple[DNSObservation, ...]:
        """Ask each DoH resolver in turn until one answers."""
        if hostname not in self._pending:
            self._pending[hostname] = asyncio.ensure_future(self._lookup(hostname))
        return await asyncio.shield(self._pending[hostname])

    async def _lookup(self, hostname: str) -> tuple[DNSObservation, ...]:
        out: list[DNSObservation] = []
        for url in self._urls:
            obs = await self._ask(url, hostname)
            out.append(obs)
            if obs.failure is None:
                break
        return tuple(out)

    async def _ask(self, url: str, hostname: str) -> DNSObservation:
        """One query to one server, over one of its shared connections while it answers.

        A query waits its turn while the server answers promptly; for a slow server it
        waits no longer than one query's timeout: a queue that long would cost more than a
        handshake.
        """
        client = await self._shared_client()
        turn = self._turns[url]
        while url in self._answering:
            try:
                async with asyncio.timeout(self._timeout):
                    await turn.acquire()
            except TimeoutError:
                if url in self._slow:
                    break  # asked beside the queue, on a connection of its own
                continue  # a prompt server behind a long queue: the wait is ours, not its
            try:
                if url not in self._answering:  # it stopped while this query waited
                    break
                # The query's timeout starts after the wait: queueing is not the server's
                # delay.
                return await self._timed(client, url, hostname)
            finally:
                turn.release()
        async with self._beside[url]:
            return await self._timed(client, url, hostname)

    async def _timed(
        self, client: keepalive.DoHConnections, url: str, hostname: str
    ) -> DNSObservation:
        """The query, noting whether the server answered and whether it was slow to."""
        monitor = lag.current()
        start = time.monotonic()
        obs = await self._query(client, url, hostname)
        took = time.monotonic() - start
        if monitor is not None:
            took -= monitor.lag_during(start, start + took)  # the probe's delay, not the server's
        if took > self._timeout / 2:
            self._slow.add(url)
        else:
            self._slow.discard(url)
        return self._noted(url, obs)

    async def _query(
        self, client: keepalive.DoHConnections, url: str, hostname: str
    ) -> DNSObservation:
        """One exchange, whose timeout does not count the time the probe's event loop ran
        late (probe.engine.lag): a busy probe extends the wait, up to LAG_ALLOWANCE times the
        timeout, rather than failing the control of a server that answered."""
        monitor = lag.current()
        if monitor is None:
            return await doh.query_doh(hostname, url, timeout=self._timeout, client=client)
        start = time.monotonic()
        task = asyncio.ensure_future(
            doh.query_doh(hostname, url, timeout=self._timeout * LAG_ALLOWANCE, client=client)
        )
        try:
            while True:
                late = monitor.lag_during(start, time.monotonic())
                left = start + self._timeout + late - time.monotonic()
                if left <= 0:
                    break
                done, _ = await asyncio.wait({task}, timeout=left)
                if done:
                    return task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        return dns.failed(hostname, "A", "doh", url, start, TimeoutError())

    def _noted(self, url: str, obs: DNSObservation) -> DNSObservation:
        """Record whether the server gave a DNS message (an rcode), then pass the answer on."""
        if obs.rcode is None:
            self._answering.discard(url)
        else:
            self._answering.add(url)
        return obs
