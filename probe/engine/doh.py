"""DNS-over-HTTPS controls, one lookup per name per sweep however many inputs share it."""

from __future__ import annotations

import asyncio

import httpx2

from measurements import dns, trust
from measurements.observations import DNSObservation


class DoHCache:
    """DNS-over-HTTPS answers, one lookup per name per sweep however many inputs share it.

    One HTTP client serves every lookup, so a sweep pays one TLS handshake per DoH server
    rather than one per name; ``aclose`` ends it with the sweep.
    """

    def __init__(self, urls: tuple[str, ...], ca_bundle: str | None, timeout: float) -> None:
        self._urls = urls
        self._ca_bundle = ca_bundle
        self._timeout = timeout
        self._pending: dict[str, asyncio.Task[tuple[DNSObservation, ...]]] = {}
        self._client: httpx2.AsyncClient | None = None

    async def _shared_client(self) -> httpx2.AsyncClient:
        if self._client is None:
            ctx = await trust.context_async(self._ca_bundle)
            # trust_env off: a proxy from the environment would move the control elsewhere.
            self._client = httpx2.AsyncClient(verify=ctx, trust_env=False)
        return self._client

    async def aclose(self) -> None:
        """Close the shared client."""
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
            obs = await dns.query_doh(
                hostname, url, timeout=self._timeout, verify=self._ca_bundle or True
            )
            out.append(obs)
            if obs.failure is None:
                break
        return tuple(out)
