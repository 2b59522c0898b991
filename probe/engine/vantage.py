"""Rule 2: before any target, check that the vantage reaches the neutral reference hosts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from measurements import http
from measurements.addresses import canonical_address, is_ip
from measurements.observations import DNSObservation, HTTPHop, HTTPObservation, to_jsonable
from probe.classify.controls import http_failed
from probe.engine.attempts import attempts
from probe.engine.steps import Measurer, dns_failed


@dataclass(frozen=True, slots=True)
class ReferenceResult:
    """One reference URL: how it resolved and what it served."""

    url: str
    dns: DNSObservation | None
    http: HTTPObservation | None
    address: str | None = None  # the address fetched (kept in memory only: the location's)

    @property
    def ok(self) -> bool:
        """True when the reference answered with any HTTP status."""
        return (
            self.http is not None
            and self.http.failure is None
            and (self.http.final.status is not None)
        )


@dataclass(frozen=True, slots=True)
class VantageCheck:
    """Whether any reference answered, and what each did."""

    results: tuple[ReferenceResult, ...]

    @property
    def ok(self) -> bool:
        """True when at least one reference host answered."""
        return any(r.ok for r in self.results)

    def first_address(self) -> str | None:
        """The address of the first reference that answered (where the location looks)."""
        return next((r.address for r in self.results if r.ok), None)

    def pages(self) -> tuple[HTTPHop, ...]:
        """What each reference that answered served (its final hop)."""
        return tuple(r.http.final for r in self.results if r.ok and r.http is not None)

    def summary(self) -> list[dict[str, object]]:
        """A JSON-ready summary for the run record and for offline rows' evidence."""
        return [
            {
                "url": r.url,
                "ok": r.ok,
                "dns_failure": r.dns.failure if r.dns else None,
                "http": to_jsonable(r.http.final) if r.http else None,
            }
            for r in self.results
        ]


async def _one(measurer: Measurer, url: str) -> ReferenceResult:
    host = (urlsplit(url).hostname or "").lower()
    lim, ca_bundle = measurer.limits, measurer.network.ca_bundle
    obs = None
    # Retried like any measurement (rule 3): one lost packet must not make a vantage "offline".
    if is_ip(host):  # "0x7f.1" is 127.0.0.1 to any connector; "010.1" stays, to be refused
        address = canonical_address(host) or host
    else:
        obs = await attempts(lim, lambda: measurer.resolve(host), dns_failed, [])
        if dns_failed(obs):
            return ReferenceResult(url, obs, None)
        address = obs.addresses[0]
    page = await attempts(
        lim,
        lambda: http.fetch(
            url, address, timeout=lim.http_timeout, ca_bundle=ca_bundle,
            max_bytes=min(lim.max_body, 256 * 1024), resolve=measurer.first_address,
            allow_address=measurer.refusal,
        ),
        http_failed,
        [],
    )  # fmt: skip
    return ReferenceResult(url, obs, page, address)


async def check_vantage(measurer: Measurer, references: tuple[str, ...]) -> VantageCheck:
    """Try every reference at once; a dead link fails them all within one timeout."""
    results = await asyncio.gather(*(_one(measurer, url) for url in references))
    return VantageCheck(tuple(results))
