"""How one input is measured: the steps in order, their retries, and the controls each needs.

Only observations are produced here; what they mean is probe.classify's business. Each
observation goes into a Collector the moment it exists, so an input stopped by its deadline
is still classified on what it showed. A redirect chain that failed at a later hop has that
hop measured next as an input of its own, into a Collector of its own (``Collector.hops``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from measurements import dns, http, tcp, tls
from measurements.addresses import address_problem, is_ip
from measurements.observations import (
    DNSObservation,
    HTTPObservation,
    Observation,
    TCPObservation,
    ThroughputObservation,
    TLSObservation,
)
from probe.classify.controls import http_failed
from probe.classify.evidence import (
    Controls,
    HelperReport,
    HopEvidence,
    InputEvidence,
    PastRate,
    ReferenceTLS,
)
from probe.config import Settings
from probe.engine.attempts import attempts
from probe.engine.doh import DoHCache
from probe.engine.planner import (
    MAX_HOPS,
    Ask,
    ControlKind,
    LaterHop,
    Seen,
    http_follows,
    later_hop,
    next_controls,
    origin,
)
from probe.engine.scheduler import HostTurns
from probe.helper.client import HelperClient
from targets.model import Input

T = TypeVar("T")


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
    dns_nonexistent: list[DNSObservation] = field(default_factory=list)
    helper: HelperReport | None = None
    helper_problem: str | None = None
    not_contacted: str | None = None
    address: str | None = None  # the address measured
    throughput: list[ThroughputObservation] = field(default_factory=list)
    throughput_innocuous: list[ThroughputObservation] = field(default_factory=list)
    throughput_reference: list[ThroughputObservation] = field(default_factory=list)
    throughput_helper: list[ThroughputObservation] = field(default_factory=list)
    throughput_helper_problem: str | None = None
    throughput_history: tuple[PastRate, ...] = ()
    asked: set[ControlKind] = field(default_factory=set)  # controls the planner had asked
    replay: list[ThroughputObservation] = field(default_factory=list)  # naming the host
    replay_innocuous: list[ThroughputObservation] = field(default_factory=list)
    replay_problem: str | None = None
    replay_screened: bool = False
    hops: list[MeasuredHop] = field(default_factory=list)  # later hops, in chain order
    # The sweep's, from the vantage check (the same for every input and hop of the sweep).
    reference_tls: tuple[ReferenceTLS, ...] = ()

    def evidence(self, job: Input, deadline_exceeded: bool = False) -> InputEvidence:
        """The frozen evidence for the classifier (a deadline cut the last hop, if any)."""
        hops = tuple(h.evidence(deadline_exceeded and h is self.hops[-1]) for h in self.hops)
        return InputEvidence(
            kind=job.kind,
            input=job.value,
            hostname=None if is_ip(job.host) else job.host,
            scheme=job.url.scheme if job.url else None,
            dns=tuple(self.dns),
            tcp=tuple(self.tcp),
            tls=tuple(self.tls),
            http=tuple(self.http),
            not_contacted=self.not_contacted,
            deadline_exceeded=deadline_exceeded,
            throughput=tuple(self.throughput),
            replay=tuple(self.replay),
            hops=hops,
        )

    def hop_observations(self) -> tuple[Observation, ...]:
        """Every observation the later hops made, to store beside the input's own."""
        found: list[Observation] = []
        for hop in self.hops:
            found += [*hop.col.dns, *hop.col.tls, *hop.col.http]
        return tuple(found)

    def controls(self, vantage_ok: bool) -> Controls:
        """The frozen controls for the classifier."""
        return Controls(
            vantage_ok=vantage_ok,
            doh=tuple(self.doh),
            tls_innocuous=tuple(self.tls_innocuous),
            http_innocuous=tuple(self.http_innocuous),
            tls_at_control_addresses=tuple(self.tls_at_control),
            http_at_control_addresses=tuple(self.http_at_control),
            dns_nonexistent=tuple(self.dns_nonexistent),
            helper=self.helper,
            reference_tls=self.reference_tls,
            helper_problem=self.helper_problem,
            throughput_innocuous=tuple(self.throughput_innocuous),
            throughput_reference=tuple(self.throughput_reference),
            throughput_helper=tuple(self.throughput_helper),
            throughput_helper_problem=self.throughput_helper_problem,
            throughput_history=self.throughput_history,
            replay_innocuous=tuple(self.replay_innocuous),
            replay_problem=self.replay_problem,
            replay_screened=self.replay_screened,
        )


@dataclass
class MeasuredHop:
    """A later hop of an input's redirect chain, measured as an input of its own."""

    at: LaterHop
    job: Input  # the hop's URL as an input (the parent's service and category)
    col: Collector = field(default_factory=Collector)

    def evidence(self, deadline_exceeded: bool = False) -> HopEvidence:
        """The hop's frozen evidence and controls, where it sits in the input's chain."""
        return HopEvidence(
            self.at.number, self.at.url, self.at.chain,
            self.col.evidence(self.job, deadline_exceeded), self.col.controls(vantage_ok=True),
        )  # fmt: skip


def made_up_name(hostname: str) -> str:
    """A name under the same top-level domain that exists nowhere (a random label)."""
    return f"nx-{secrets.token_hex(8)}.{hostname.rstrip('.').rsplit('.', 1)[-1]}"


def dns_failed(obs: DNSObservation) -> bool:
    """A lookup that gave no address."""
    return obs.failure is not None or not obs.addresses


class Measurer:
    """Runs the steps for each input, sharing the per-sweep caches."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.network, self.control, self.limits = (
            settings.network,
            settings.control,
            settings.limits,
        )
        c = self.control
        self.doh = DoHCache(c.doh, self.network.ca_bundle, self.limits.dns_timeout)
        self.hop_turns = HostTurns(self.limits.per_host)
        self.helper = (
            HelperClient(
                c.helper, self.network.ca_bundle, self.limits.http_timeout * 3,
                token=c.helper_token,
            )
            if c.helper
            else None
        )  # fmt: skip

    async def aclose(self) -> None:
        """Close the clients shared by the sweep."""
        await self.doh.aclose()
        if self.helper is not None:
            await self.helper.aclose()

    async def resolve(self, hostname: str, *, window: float = dns.WINDOW) -> DNSObservation:
        """One lookup through the resolver under test (the system's when none is set).

        ``window``: how long a UDP lookup keeps listening after its first answer, for a
        second (injected) one; 0 where only the first answer is ever read.
        """
        resolver, timeout = self.network.resolver, self.limits.dns_timeout
        if resolver is None:
            return await dns.query_system(hostname, timeout=timeout)
        return await dns.query_udp(hostname, resolver, timeout=timeout, window=window)

    async def first_address(self, hostname: str) -> str | None:
        """An address for a redirect's new host, from the resolver under test.

        Only the first answer is read (a hop that fails is measured as an input of its own,
        with the injection window), so no wait for a second one inside the fetch's time.
        """
        obs = await self.resolve(hostname, window=0.0)
        return obs.addresses[0] if obs.addresses else None

    def refusal(self, ip: str) -> str | None:
        """Why an address must not be contacted (the safety rule), or None."""
        problem = address_problem(ip, self.network.routable)
        return f"{ip} is a {problem} address" if problem else None

    async def measure(
        self, job: Input, col: Collector, *, max_body: int | None = None, ranged: bool = False
    ) -> None:
        """Measure one input into ``col``: its steps, then each control the planner names.

        ``max_body`` caps the page read below the configured cap; ``ranged`` asks the server
        for no more than that (a ``Range``). Both are for a throughput URL, whose resource is
        timed later: here only its status and first bytes matter.
        """
        fetch = _Fetch(max_body or self.limits.max_body, ranged)
        await self._input(job, col, fetch)
        await self._later_hops(job, col, fetch)

    async def _input(self, job: Input, col: Collector, fetch: _Fetch) -> None:
        """The steps of one URL or endpoint, then each control the planner names."""
        await self._steps(job, col, fetch)
        # Bounded: each control is asked at most once, and there are six.
        while asks := next_controls(self._seen(job, col), self.refusal):
            for ask in asks:
                col.asked.add(ask.kind)
                await self._ask(ask, job, col, fetch)

    async def _later_hops(self, job: Input, col: Collector, fetch: _Fetch) -> None:
        """The hop at which the chain failed, measured like an input, then any hop at which
        that hop's own chain failed, and so on: at most MAX_HOPS, never one origin twice."""
        if job.url is None:
            return
        measured = {origin(job.value)}
        before: tuple[str, ...] = ()  # the chain that led to the source's URL
        source, source_col = job, col
        while len(col.hops) < MAX_HOPS:
            at = later_hop(source_col.evidence(source), frozenset(measured), before)
            if at is None:
                return
            hop = MeasuredHop(
                at, Input(job.service, job.category, "url", at.url),
                Collector(reference_tls=col.reference_tls),
            )  # fmt: skip
            col.hops.append(hop)
            measured.add(origin(at.url))
            await self._input(hop.job, hop.col, fetch)  # every address checked by refusal
            source, source_col, before = hop.job, hop.col, at.chain[:-1]

    def _seen(self, job: Input, col: Collector) -> Seen:
        return Seen(
            col.evidence(job), tuple(col.doh), col.address, frozenset(col.asked),
            helper=self.helper is not None,
        )  # fmt: skip

    async def _steps(self, job: Input, col: Collector, fetch: _Fetch) -> None:
        """DNS, then TCP (an endpoint) or TLS and HTTP (a URL), each retried before it counts.

        The DoH control is asked beside them and collected after: the resolver under test
        alone decides the address measured, so the input's own steps need not wait for the
        control (nor for the other names queued at the DoH server before it).
        """
        host = job.host
        doh_task = None
        if self.control.doh and not is_ip(host):
            doh_task = asyncio.ensure_future(self.doh.lookup(host))
        try:
            await self._own_steps(job, col, fetch)
        except BaseException:
            if doh_task is not None:
                if doh_task.done() and not doh_task.cancelled() and not doh_task.exception():
                    col.doh.extend(doh_task.result())  # what the control said by the deadline
                doh_task.cancel()  # this input's wait only: the shared lookup goes on
            raise
        if doh_task is not None:
            col.doh.extend(await doh_task)

    async def _own_steps(self, job: Input, col: Collector, fetch: _Fetch) -> None:
        host, lim = job.host, self.limits
        addresses: tuple[str, ...] = (host,) if is_ip(host) else ()
        if not addresses:
            ok = await attempts(lim, lambda: self.resolve(host), dns_failed, col.dns)
            if dns_failed(ok):
                return
            addresses = ok.addresses
        usable = [ip for ip in addresses if self.refusal(ip) is None]
        if not usable:
            col.not_contacted = f"{host} resolves to {self.refusal(addresses[0])}"
            return
        ip = col.address = usable[0]
        port = job.target.port
        if job.url is None:
            await attempts(
                lim, lambda: tcp.connect(ip, port, timeout=lim.connect_timeout),
                lambda o: o.failure is not None, col.tcp,
            )  # fmt: skip
            return
        if job.url.scheme == "https":
            await attempts(
                lim, lambda: self._handshake(ip, port, host), lambda o: o.failure is not None,
                col.tls,
            )  # fmt: skip
            if not http_follows(col.evidence(job)):
                return
        await attempts(lim, lambda: self._fetch(job.value, ip, fetch), http_failed, col.http)

    def _handshake(
        self, ip: str, port: int, sni: str, *, check: bool = True
    ) -> Awaitable[TLSObservation]:
        return tls.handshake(
            ip, port, sni, timeout=self.limits.connect_timeout,
            ca_bundle=self.network.ca_bundle if check else None, check_certificate=check,
        )  # fmt: skip

    def _fetch(
        self, url: str, ip: str, fetch: _Fetch, *, verify: bool = True, redirects: int = MAX_HOPS
    ) -> Awaitable[HTTPObservation]:
        return http.fetch(
            url, ip, timeout=self.limits.http_timeout, ca_bundle=self.network.ca_bundle,
            verify=verify, max_bytes=fetch.max_body, max_redirects=redirects,
            resolve=self.first_address if redirects else None, allow_address=self.refusal,
            ranged=fetch.ranged, hop_turn=self.hop_turns.turn,
        )  # fmt: skip

    async def _ask(self, ask: Ask, job: Input, col: Collector, fetch: _Fetch) -> None:
        """Ask one control and keep its answer where the classifier looks for it."""
        lim, host, port = self.limits, job.host, job.target.port
        ip = col.address
        assert ip is not None  # the planner asks controls only of a contacted input
        if ask.kind == "tls_innocuous":
            # Rule 5's control: the same address with a name no censor cares about.
            innocuous = self.control.innocuous_name
            await attempts(
                lim, lambda: self._handshake(ip, port, innocuous, check=False),
                lambda o: o.failure is not None, col.tls_innocuous,
            )  # fmt: skip
        elif ask.kind == "tls_at_doh" and ask.address is not None:
            # Rule 4's control: does the address DoH gives serve the name where ours did not?
            col.tls_at_control.append(await self._handshake(ask.address, port, host))
        elif ask.kind == "http_at_doh" and ask.address is not None:
            # Rule 4's control for plain HTTP, which has no certificate to vouch for the
            # resolver's address: the page at DoH's address, when the two disagree.
            col.http_at_control.append(
                await self._fetch(job.value, ask.address, fetch, redirects=0)
            )
        elif ask.kind == "http_innocuous" and job.url is not None:
            # Rule 6's control: the same address asked for the same path and query with an
            # innocuous name (asking for "/" compared a slow path with a prompt front page).
            same = job.url.with_host(self.control.innocuous_name)
            await attempts(
                lim, lambda: self._fetch(same, ip, fetch, verify=False, redirects=0),
                http_failed, col.http_innocuous,
            )  # fmt: skip
        elif ask.kind == "dns_nonexistent":
            # Rule 4's control for a ghost name: a resolver that answers names that exist
            # nowhere (NXDOMAIN rewritten, for ads or search) is not singling this one out.
            col.dns_nonexistent.append(await self.resolve(made_up_name(host)))
        elif ask.kind == "helper" and self.helper is not None:
            answer = await self.helper.ask_check(job.value, ip)
            col.helper, col.helper_problem = answer.report, answer.problem


@dataclass(frozen=True, slots=True)
class _Fetch:
    """How much of a page one input's fetches read, and whether they ask for no more."""

    max_body: int
    ranged: bool
