"""How one input is measured: the steps in order, their retries, and the controls each needs.

Only observations are produced here; what they mean is probe.classify's business. Each
observation goes into a Collector the moment it exists, so an input stopped by its deadline
is still classified on what it showed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from measurements import dns, http, tcp, tls
from measurements.addresses import Network, address_problem, is_ip
from measurements.observations import (
    DNSObservation,
    HTTPObservation,
    TCPObservation,
    ThroughputObservation,
    TLSObservation,
)
from probe.classify.evidence import Controls, HelperReport, InputEvidence, PastRate
from probe.engine.doh import DoHCache
from probe.helper.client import HelperClient
from targets.model import Endpoint, Input

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MeasureSettings:
    """What the steps need from the configuration."""

    resolver: str | None  # None: the system resolver
    ca_bundle: str | None
    routable: tuple[Network, ...]
    doh: tuple[str, ...]
    innocuous_name: str
    helper: str | None = None  # the control helper's URL
    helper_token: str | None = None  # its shared secret, if it asks for one
    retries: int = 1
    retry_delay: float = 1.0
    dns_timeout: float = 5.0
    connect_timeout: float = 5.0
    http_timeout: float = 10.0
    max_body: int = 1 << 20


@dataclass
class Collector:
    """Observations of one input as they arrive (the only mutable thing in a measurement)."""

    dns: list[DNSObservation] = field(default_factory=list)
    tcp: list[TCPObservation] = field(default_factory=list)
    tls: list[TLSObservation] = field(default_factory=list)
    http: list[HTTPObservation] = field(default_factory=list)
    doh: list[DNSObservation] = field(default_factory=list)
    tls_innocuous: list[TLSObservation] = field(default_factory=list)
    http_innocuous: list[HTTPObservation] = field(default_factory=list)
    tls_at_control: list[TLSObservation] = field(default_factory=list)
    http_at_control: list[HTTPObservation] = field(default_factory=list)
    helper: HelperReport | None = None
    not_contacted: str | None = None
    address: str | None = None  # the address measured
    throughput: list[ThroughputObservation] = field(default_factory=list)
    throughput_innocuous: list[ThroughputObservation] = field(default_factory=list)
    throughput_reference: list[ThroughputObservation] = field(default_factory=list)
    throughput_helper: list[ThroughputObservation] = field(default_factory=list)
    throughput_history: tuple[PastRate, ...] = ()

    def evidence(self, job: Input, deadline_exceeded: bool) -> InputEvidence:
        """The frozen evidence for the classifier."""
        host, scheme = _host_and_scheme(job)
        return InputEvidence(
            kind=job.kind,
            input=job.value,
            hostname=None if is_ip(host) else host,
            scheme=scheme,
            dns=tuple(self.dns),
            tcp=tuple(self.tcp),
            tls=tuple(self.tls),
            http=tuple(self.http),
            not_contacted=self.not_contacted,
            deadline_exceeded=deadline_exceeded,
            throughput=tuple(self.throughput),
        )

    def controls(self, vantage_ok: bool) -> Controls:
        """The frozen controls for the classifier."""
        return Controls(
            vantage_ok=vantage_ok,
            doh=tuple(self.doh),
            tls_innocuous=tuple(self.tls_innocuous),
            http_innocuous=tuple(self.http_innocuous),
            tls_at_control_addresses=tuple(self.tls_at_control),
            http_at_control_addresses=tuple(self.http_at_control),
            helper=self.helper,
            throughput_innocuous=tuple(self.throughput_innocuous),
            throughput_reference=tuple(self.throughput_reference),
            throughput_helper=tuple(self.throughput_helper),
            throughput_history=self.throughput_history,
        )


def _host_and_scheme(job: Input) -> tuple[str, str | None]:
    if job.kind == "endpoint":
        return Endpoint.parse(job.value).host, None
    parts = urlsplit(job.value)
    return (parts.hostname or "").lower(), parts.scheme.lower()


async def attempts(
    settings: MeasureSettings,
    op: Callable[[], Awaitable[T]],
    failed: Callable[[T], bool],
    sink: list[T],
) -> T:
    """Rule 3: a failure is retried, spaced, before it counts; every attempt is kept."""
    for attempt in range(settings.retries + 1):
        if attempt:
            await asyncio.sleep(settings.retry_delay)
        obs = await op()
        sink.append(obs)
        if not failed(obs):
            break
    return obs


def dns_failed(obs: DNSObservation) -> bool:
    """A lookup that gave no address."""
    return obs.failure is not None or not obs.addresses


def http_failed(obs: HTTPObservation) -> bool:
    """A fetch that ended without an HTTP answer."""
    return obs.failure is not None or obs.final.refused is not None or obs.final.status is None


def _needs_helper(col: Collector) -> bool:
    """Whether the classifier would use the helper's view: a failed connect, an invalid
    chain, or a plain-HTTP page (only the helper's page can show it was altered)."""
    if col.tcp and all(o.failure is not None for o in col.tcp):
        return True
    if col.tls and all(o.failure is not None for o in col.tls):
        return col.tls[-1].operation == "connect"
    if col.tls and col.tls[-1].cert_valid is False:
        return True
    if col.http and all(http_failed(o) for o in col.http):
        # A connect, a cut, a timeout or a malformed answer: only a fetch of the same URL
        # from elsewhere tells the site's fault from the path's.
        return col.http[-1].final.operation in ("connect", "http_request", "http_body")
    return bool(col.http) and not col.tls  # plain HTTP: compare the page


class Measurer:
    """Runs the steps for each input, sharing the per-sweep caches."""

    def __init__(self, settings: MeasureSettings) -> None:
        self.settings = settings
        self.doh = DoHCache(settings.doh, settings.ca_bundle, settings.dns_timeout)
        self.helper = (
            HelperClient(
                settings.helper,
                settings.ca_bundle,
                settings.http_timeout * 3,
                token=settings.helper_token,
            )
            if settings.helper
            else None
        )

    async def aclose(self) -> None:
        """Close the clients shared by the sweep."""
        await self.doh.aclose()
        if self.helper is not None:
            await self.helper.aclose()

    async def resolve(self, hostname: str) -> DNSObservation:
        """One lookup through the resolver under test (the system's when none is set)."""
        s = self.settings
        if s.resolver is None:
            return await dns.query_system(hostname, timeout=s.dns_timeout)
        return await dns.query_udp(hostname, s.resolver, timeout=s.dns_timeout)

    async def first_address(self, hostname: str) -> str | None:
        """An address for a redirect's new host, from the resolver under test."""
        obs = await self.resolve(hostname)
        return obs.addresses[0] if obs.addresses else None

    def refusal(self, ip: str) -> str | None:
        problem = address_problem(ip, self.settings.routable)
        return f"{ip} is a {problem} address" if problem else None

    async def measure(
        self, job: Input, col: Collector, *, max_body: int | None = None, ranged: bool = False
    ) -> None:
        """Measure one input into ``col``, then ask the helper if what was seen needs it.

        ``max_body`` caps the page read below the configured cap; ``ranged`` asks the server
        for no more than that (a ``Range``). Both are for a throughput URL, whose resource is
        timed later: here only its status and first bytes matter.
        """
        await self._steps(job, col, max_body or self.settings.max_body, ranged)
        if self.helper is not None and col.address is not None and _needs_helper(col):
            col.helper = await self.helper.check(job.value, col.address)

    async def _steps(self, job: Input, col: Collector, max_body: int, ranged: bool) -> None:
        host, scheme = _host_and_scheme(job)
        port = Endpoint.parse(job.value).port if job.kind == "endpoint" else None
        addresses: tuple[str, ...] = (host,) if is_ip(host) else ()
        if not addresses:
            doh_task = asyncio.ensure_future(self.doh.lookup(host)) if self.settings.doh else None
            ok = await attempts(self.settings, lambda: self.resolve(host), dns_failed, col.dns)
            if doh_task is not None:
                col.doh.extend(await doh_task)
            if dns_failed(ok):
                return
            addresses = ok.addresses
        usable = [ip for ip in addresses if self.refusal(ip) is None]
        if not usable:
            col.not_contacted = f"{host} resolves to {self.refusal(addresses[0])}"
            return
        ip = col.address = usable[0]
        if job.kind == "endpoint":
            assert port is not None
            await attempts(
                self.settings,
                lambda: tcp.connect(ip, port, timeout=self.settings.connect_timeout),
                lambda o: o.failure is not None,
                col.tcp,
            )
            return
        if scheme == "https" and not await self._tls_step(job, host, ip, col):
            return
        await self._http_step(job, host, scheme or "http", ip, col, max_body, ranged)

    async def _tls_step(self, job: Input, host: str, ip: str, col: Collector) -> bool:
        """The handshake with the target's SNI; False when HTTP must not follow."""
        s = self.settings
        port = urlsplit(job.value).port or 443
        obs = await attempts(
            s,
            lambda: tls.handshake(ip, port, host, timeout=s.connect_timeout, ca_bundle=s.ca_bundle),
            lambda o: o.failure is not None,
            col.tls,
        )
        if obs.failure is not None and obs.operation == "tls_handshake":
            # Rule 5's control: the same address with a name no censor cares about.
            await attempts(
                s,
                lambda: tls.handshake(
                    ip, port, s.innocuous_name, timeout=s.connect_timeout,
                    check_certificate=False,
                ),
                lambda o: o.failure is not None,
                col.tls_innocuous,
            )  # fmt: skip
        if obs.failure is not None or obs.cert_valid is False:
            await self._tls_at_doh_address(host, port, ip, col)
            return False
        return True

    def _doh_alternative(self, ip: str, col: Collector) -> str | None:
        """A measurable address DoH gave, when the resolver under test gave none of DoH's."""
        doh = [a for o in col.doh if o.failure is None for a in o.addresses]
        resolved = {a for o in col.dns for a in o.addresses}
        if not doh or ip in doh or not col.dns or resolved & set(doh):
            return None
        return next((a for a in doh if self.refusal(a) is None), None)

    async def _tls_at_doh_address(self, host: str, port: int, ip: str, col: Collector) -> None:
        """Rule 4's control: does the address DoH gives serve the name where ours did not?"""
        candidate = self._doh_alternative(ip, col)
        if candidate is None:
            return
        s = self.settings
        col.tls_at_control.append(
            await tls.handshake(
                candidate, port, host, timeout=s.connect_timeout, ca_bundle=s.ca_bundle
            )
        )

    async def _http_step(
        self,
        job: Input,
        host: str,
        scheme: str,
        ip: str,
        col: Collector,
        max_body: int,
        ranged: bool,
    ) -> None:
        s = self.settings

        def fetch(url: str, verify: bool, redirects: int) -> Awaitable[HTTPObservation]:
            return http.fetch(
                url, ip, timeout=s.http_timeout, ca_bundle=s.ca_bundle, verify=verify,
                max_bytes=max_body, max_redirects=redirects, resolve=self.first_address,
                allow_address=self.refusal, ranged=ranged,
            )  # fmt: skip

        obs = await attempts(s, lambda: fetch(job.value, True, 5), http_failed, col.http)
        if scheme == "http":
            # Rule 4's control for plain HTTP, which has no certificate to vouch for the
            # resolver's address: the page at DoH's address, when the two disagree.
            candidate = self._doh_alternative(ip, col)
            if candidate is not None:
                col.http_at_control.append(
                    await http.fetch(
                        job.value, candidate, timeout=s.http_timeout, max_bytes=max_body,
                        max_redirects=0, allow_address=self.refusal, ranged=ranged,
                    )
                )  # fmt: skip
        if http_failed(obs) and obs.final.operation in ("http_request", "http_body"):
            # Rule 6's control: the same address asked for the same path and query with an
            # innocuous name (asking for "/" compared a slow path with a prompt front page).
            parts = urlsplit(job.value)
            netloc = s.innocuous_name + (f":{parts.port}" if parts.port else "")
            same = parts._replace(netloc=netloc, fragment="").geturl()
            await attempts(s, lambda: fetch(same, False, 0), http_failed, col.http_innocuous)
