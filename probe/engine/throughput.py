"""Rule 7's trials in a sweep: which inputs are timed, in what order, one at a time, on budget.

An input is timed when it is a service's ``throughput_url``, its ordinary measurement found it
accessible, and its resource answered 2xx over HTTPS; and so is any HTTPS input whose 2xx page
came too slowly to finish (``http.slow_body``), or finished at most 1/RATIO of the fastest
reference page of the sweep (``escalates``): a slow page escalates to a timed test of itself
(rule 7, so that nothing depends on a list naming a download). The test then downloads, in rounds,

    target     the resource, pinned to the address just measured, with its own SNI;
    innocuous  the same resource from the same address, the ClientHello naming
               ``control.innocuous_name`` (the certificate cannot match: not checked, and the
               observation says so);
    reference  a reference URL (``throughput.reference``, else ``control.reference``, else
               the target list's),

``trials`` rounds of the three, the order rotating each round so none always goes first (the
kernel caches a path's congestion state per address, so a throttled transfer could slow the
next one to the same address). Every transfer gets an equal share of the test's byte and time
budgets.

Two more controls come from outside the volunteer's line. With a control helper configured,
the helper times the same resource at the same address meanwhile (``trials`` downloads of the
same size, on its own line: they cannot slow the probe's, so they need not wait their turn).
And the input's earlier tests at this vantage (the sweep reads them from the store before it
starts) come along as history.

Throughput tests never run at once (they would measure each other): one lock per sweep
serialises them, every transfer of every test, controls included. A test starts only when
its whole byte budget fits in what is left of the sweep's and of the last 24 hours'; none
runs on a metered network, and the transfers hold the line at most ``max_link_share`` of
the time (probe.engine.linkbudget).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from measurements import throughput
from measurements.addresses import canonical_address, is_ip
from measurements.observations import HTTPHop, ThroughputObservation
from probe.classify.controls import http_failed
from probe.classify.evidence import PastRate
from probe.classify.trials import far_slower_than_references
from probe.classify.verdict import Verdict
from probe.config import ThroughputSettings
from probe.engine.linkbudget import LinkShare
from probe.engine.steps import Collector, Measurer, dns_failed
from targets.model import Input, TargetList

KINDS = ("target", "innocuous", "reference")
# What the ordinary measurement of a throughput URL reads: its status and a blockpage's worth.
THROUGHPUT_PAGE_BYTES = 16 * 1024


def throughput_urls(targets: TargetList) -> frozenset[str]:
    """Every service's throughput URL."""
    return frozenset(s.throughput_url for s in targets.services if s.throughput_url)


def bytes_of(col: Collector) -> int:
    """Bytes the throughput transfers of one input moved, controls and replays included."""
    every = (
        *col.throughput, *col.throughput_innocuous, *col.throughput_reference,
        *col.replay, *col.replay_innocuous,
    )  # fmt: skip
    return sum(o.bytes for o in every)


class ThroughputTester:
    """Runs a sweep's throughput tests: strictly one at a time, within the byte budgets."""

    def __init__(
        self,
        settings: ThroughputSettings,
        references: tuple[str, ...],
        measurer: Measurer,
        urls: frozenset[str],
        spent_today: int = 0,
    ) -> None:
        self.settings = settings
        self.references = settings.reference or references  # [throughput], else the controls'
        self.measurer = measurer
        self.urls = urls
        self.spent_today = spent_today  # before this sweep, in the last 24 hours
        self.spent = 0  # by this sweep
        self.history: dict[str, tuple[PastRate, ...]] = {}  # by input, newest first
        self.lock = asyncio.Lock()  # the sweep's one turn for timed transfers
        self._reference: asyncio.Future[tuple[str, str] | None] | None = None
        self.reference_pages: tuple[HTTPHop, ...] = ()  # what the vantage check fetched
        self.metered: str | None = None  # why no transfer runs here (a metered network)
        self.link = LinkShare(settings.max_link_share)  # shared with the SNI replays

    @property
    def transfers(self) -> int:
        """Downloads per test: each kind, each round."""
        return len(KINDS) * self.settings.trials

    def wants(self, job: Input) -> bool:
        """Whether this input is a throughput URL."""
        return job.kind == "url" and job.value in self.urls

    def escalates(self, job: Input, col: Collector, verdict: Verdict) -> bool:
        """Whether an HTTPS page earns a timed test of itself (rule 7's escalation).

        It does when it came too slowly to finish (``http.slow_body``), or finished
        accessible at most 1/RATIO of the fastest reference page of this sweep (both long
        enough to time: trials.far_slower_than_references).
        """
        if job.url is None or job.url.scheme != "https" or self.wants(job):
            return False
        if verdict.rule == "http.slow_body":
            return True
        page = col.http[-1].final if col.http else None
        return verdict.verdict == "accessible" and far_slower_than_references(
            page, self.reference_pages
        )

    def allowance(self) -> int:
        """Bytes still allowed: the smaller of the sweep's and the day's remainder."""
        s = self.settings
        return max(
            0,
            min(
                s.max_bytes_per_sweep - self.spent,
                s.max_bytes_per_day - self.spent_today - self.spent,
            ),
        )

    async def run(self, job: Input, col: Collector, *, slow: bool = False) -> str | None:
        """Time the input into ``col``; or say why it was not timed.

        ``slow``: the input is not a throughput URL, but its page ``escalates``, so it is
        timed as one (rule 7: a slow page escalates).
        """
        s = self.settings
        if not s.enabled:
            return "throughput tests are off (throughput.enabled, --no-throughput)"
        if self.metered is not None:
            return self.metered
        page = _slow_resource(col) if slow else _resource(col)
        if page is None or page.ip is None:
            return "the throughput URL did not answer 2xx"
        if urlsplit(page.url).scheme != "https":
            return "only HTTPS resources are timed (the innocuous control changes the SNI)"
        async with self.lock:
            if self.allowance() < s.max_bytes_per_test:
                return (
                    f"the throughput budget is spent: {self.allowance()} bytes left of this "
                    f"sweep's and the last 24 hours' budgets, a test needs {s.max_bytes_per_test}"
                )
            reference = await self._reference_address()
            if reference is None:
                return "no reference URL could be resolved to a usable address"
            col.throughput_history = self.history.get(job.value, ())
            await self._trials(page.url, page.ip, reference, col)
        return None

    async def _trials(self, url: str, ip: str, reference: tuple[str, str], col: Collector) -> None:
        s = self.settings
        per_bytes = max(1, s.max_bytes_per_test // self.transfers)
        per_seconds = s.max_seconds_per_test / self.transfers
        ca_bundle = self.measurer.network.ca_bundle
        innocuous = self.measurer.control.innocuous_name

        def get(kind: str) -> Awaitable[ThroughputObservation]:
            common: dict[str, Any] = {
                "max_bytes": per_bytes, "max_seconds": per_seconds,
                "sample_every": s.sample_interval, "ca_bundle": ca_bundle,
            }  # fmt: skip
            if kind == "target":
                return throughput.download(url, ip, **common)
            if kind == "innocuous":
                return throughput.download(url, ip, sni=innocuous, verify=False, **common)
            return throughput.download(*reference, **common)

        helper = self.measurer.helper
        helper_task = (
            asyncio.ensure_future(
                helper.ask_throughput(
                    url, ip, max_bytes=per_bytes, max_seconds=per_seconds, trials=s.trials
                )
            )
            if helper is not None
            else None
        )
        sinks: dict[str, Callable[[ThroughputObservation], None]] = {
            "target": col.throughput.append,
            "innocuous": col.throughput_innocuous.append,
            "reference": col.throughput_reference.append,
        }
        try:
            for round_ in range(s.trials):
                shift = round_ % len(KINDS)
                for kind in KINDS[shift:] + KINDS[:shift]:
                    async with self.link.transfer():
                        obs = await get(kind)
                    self.spent += obs.bytes
                    sinks[kind](obs)
            if helper_task is not None:
                answer = await helper_task
                col.throughput_helper.extend(answer.transfers)
                col.throughput_helper_problem = answer.problem
        finally:
            # A sweep stopped mid-test (Ctrl-C, its deadline) wants no answer from the helper.
            if helper_task is not None and not helper_task.done():
                helper_task.cancel()
                await asyncio.wait([helper_task])

    async def _reference_address(self) -> tuple[str, str] | None:
        """The first reference URL that resolves to a usable address (looked up once)."""
        if self._reference is None:
            self._reference = asyncio.ensure_future(self._find_reference())
        return await asyncio.shield(self._reference)

    async def _find_reference(self) -> tuple[str, str] | None:
        for url in self.references:
            host = (urlsplit(url).hostname or "").lower()
            # "0x7f.1" is 127.0.0.1 to any connector; "010.1" stays as written, to be refused.
            ip = (canonical_address(host) or host) if is_ip(host) else None
            if ip is None:
                obs = await self.measurer.resolve(host)
                ip = None if dns_failed(obs) else obs.addresses[0]
            if ip is not None and self.measurer.refusal(ip) is None:
                return url, ip
        return None


def _resource(col: Collector) -> HTTPHop | None:
    """Where the ordinary measurement found the resource: the final hop, if it answered 2xx."""
    ok = next((o for o in col.http if not http_failed(o)), None)
    if ok is None:
        return None
    final = ok.final
    return final if final.status is not None and 200 <= final.status < 300 else None


def _slow_resource(col: Collector) -> HTTPHop | None:
    """The final hop of a 2xx page that escalated: too slow to finish, or finished slowly."""
    final = col.http[-1].final if col.http else None
    if final is None or final.status is None or not 200 <= final.status < 300:
        return None
    unfinished = final.operation == "http_body"
    return final if (final.failure is None or unfinished) and final.body_length else None
