"""Rule 2: before any target, check that the vantage reaches the neutral reference hosts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from measurements import http, tls
from measurements.addresses import canonical_address, is_ip
from measurements.observations import (
    DNSObservation,
    HTTPHop,
    HTTPObservation,
    TLSObservation,
    to_jsonable,
)
from probe.classify.controls import http_failed
from probe.classify.evidence import ReferenceTLS
from probe.classify.fingerprints import Fingerprints
from probe.engine.attempts import attempts
from probe.engine.steps import Measurer, dns_failed


@dataclass(frozen=True, slots=True)
class ReferenceResult:
    """One reference URL: how it resolved and what it served."""

    url: str
    dns: DNSObservation | None
    http: HTTPObservation | None
    address: str | None = None  # the address fetched (kept in memory only: the location's)
    # An HTTPS reference's handshake, its chain kept even when it does not validate: an
    # interceptor that forges every site's chain shows here too (ReferenceTLS).
    tls: TLSObservation | None = None

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

    def tls_seen(self, fingerprints: Fingerprints) -> tuple[ReferenceTLS, ...]:
        """Each HTTPS reference's presented chain: its leaf's issuer and the known
        interception CA it shows, if any (what rule 5 holds a target's chain against)."""
        out = []
        for r in self.results:
            if r.tls is None:
                continue
            chain = r.tls.chain
            known = fingerprints.interception_match(chain) if chain else None
            issuer = chain[0].issuer if chain else None
            out.append(ReferenceTLS(r.url, issuer, known.fingerprint if known else None))
        return tuple(out)

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
        # Without the injection window: the vantage check reads the first answer only (its
        # address, or its failure), so a second one would change nothing, and waiting for
        # it cost every sweep 0.3 s per attempt (an offline one 0.6 s, its retry included).
        obs = await attempts(lim, lambda: measurer.resolve(host, window=0.0), dns_failed, [])
        if dns_failed(obs):
            return ReferenceResult(url, obs, None)
        address = obs.addresses[0]
    fetched = attempts(
        lim,
        lambda: http.fetch(
            url, address, timeout=lim.http_timeout, ca_bundle=ca_bundle,
            max_bytes=min(lim.max_body, 256 * 1024), resolve=measurer.first_address,
            allow_address=measurer.refusal,
        ),
        http_failed,
        [],
    )  # fmt: skip
    # Alongside the page, not after it: a dead reference costs the check no extra timeout.
    page, shown = await asyncio.gather(fetched, _handshake(measurer, url, address))
    return ReferenceResult(url, obs, page, address, shown)


async def _handshake(measurer: Measurer, url: str, address: str) -> TLSObservation | None:
    """An HTTPS reference's chain as presented (validated against the probe's trust store,
    kept whatever the result); None for plain HTTP or a name the safety rule refuses."""
    parts = urlsplit(url)
    if parts.scheme != "https" or measurer.refusal(address) is not None:
        return None
    host, lim = parts.hostname or "", measurer.limits
    return await attempts(
        lim,
        lambda: tls.handshake(
            address, parts.port or 443, None if is_ip(host) else host,
            timeout=lim.connect_timeout, ca_bundle=measurer.network.ca_bundle,
        ),
        lambda o: o.failure is not None,
        [],
    )  # fmt: skip


async def check_vantage(measurer: Measurer, references: tuple[str, ...]) -> VantageCheck:
    """Try every reference at once; a dead link fails them all within one timeout."""
    results = await asyncio.gather(*(_one(measurer, url) for url in references))
    return VantageCheck(tuple(results))
