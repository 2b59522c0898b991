"""DNS-over-HTTPS controls, one lookup per name per sweep however many inputs share it."""

from __future__ import annotations

import asyncio

import httpx

from measurements import doh, trust
from measurements.observations import DNSObservation


class DoHCache:
    """DNS-over-HTTPS answers, one lookup per name per sweep however many inputs share it.

    One httpx client (HTTP/1.1, keep-alive) serves every lookup. HTTP/1.1 carries one
    exchange at a time, so the names asked of one DoH server go one after another over its
    kept-alive connection: a sweep pays one TLS handshake per DoH server rather than one per
    name. A server that stops answering is asked in parallel instead, so its timeouts do not
    queue up behind each other, and so is a name that waited a whole query timeout for its
    turn. ``aclose`` ends the client with the sweep.
    """

    def __init__(self, urls: tuple[str, ...], ca_bundle: str | None, timeout: float) -> None:
        self._urls = urls
        self._ca_bundle = ca_bundle
        self._timeout = timeout
        self._pending: dict[str, asyncio.Task[tuple[DNSObservation, ...]]] = {}
        self._client: httpx.AsyncClient | None = None
        self._turns = {url: asyncio.Lock() for url in urls}
        # Servers whose last answer was a DNS message: their connection is worth waiting for.
        self._answering = set(urls)

    async def _shared_client(self) -> httpx.AsyncClient:
        # The configured trust anchors, or the system's; built off the loop if not preloaded.
        context = await trust.context_async(self._ca_bundle)
        if self._client is None:  # checked after the await: the first lookups arrive together
            self._client = doh.doh_client(context)
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
            await self._client.aclose()
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
        """One query to one server, over its shared connection when that is worth waiting for.

        A query waits its turn while the server answers, but no longer than one query's
        timeout: a queue that long (a slow server, many names) would cost more than a handshake.
        """
        client = await self._shared_client()
        turn = self._turns[url]
        if url in self._answering:
            try:
                async with asyncio.timeout(self._timeout):
                    await turn.acquire()
            except TimeoutError:
                pass  # asked beside the queue, on a connection of its own
            else:
                try:
                    if url in self._answering:  # it may have stopped while this query waited
                        # The query's timeout starts after the wait: queueing is not the
                        # server's delay.
                        return self._noted(url, await self._query(client, url, hostname))
                finally:
                    turn.release()
        return self._noted(url, await self._query(client, url, hostname))

    async def _query(self, client: httpx.AsyncClient, url: str, hostname: str) -> DNSObservation:
        return await doh.query_doh(hostname, url, timeout=self._timeout, client=client)

    def _noted(self, url: str, obs: DNSObservation) -> DNSObservation:
        """Record whether the server gave a DNS message (an rcode), then pass the answer on."""
        if obs.rcode is None:
            self._answering.discard(url)
        else:
            self._answering.add(url)
        return obs
