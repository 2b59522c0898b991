"""One sweep: check the vantage, find where it is, measure every input, classify, store each
as it finishes."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any

from measurements import trust
from measurements.geoip import GeoIP, GeoIPError, open_geoip
from measurements.observations import Observation, to_jsonable
from probe.classify import classify
from probe.classify.control_status import ControlSetup, ThroughputRun, as_json, control_status
from probe.classify.evidence import Controls, InputEvidence, ReferenceTLS
from probe.classify.fingerprints import Fingerprints, load_bundled
from probe.classify.verdict import Location, MeasurementRecord, RunInfo, Vantage, Verdict
from probe.config import Settings
from probe.engine import faults, lag, location
from probe.engine.attempts import STARVED
from probe.engine.linkbudget import metered_reason
from probe.engine.replay import ReplayTester
from probe.engine.scheduler import Limits, Scheduler, in_flight_budget
from probe.engine.steps import Collector, Measurer
from probe.engine.throughput import (
    THROUGHPUT_PAGE_BYTES,
    ThroughputTester,
    bytes_of,
    throughput_urls,
)
from probe.engine.vantage import VantageCheck, check_vantage
from probe.store.budgets import HISTORY_DAYS
from probe.store.database import StoreError
from probe.store.writer import AsyncWriter
from targets.model import Input, TargetList

Progress = Callable[[int, int, MeasurementRecord | None], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What a finished (or stopped) sweep did."""

    run_id: str
    # completed, timed_out or offline; interrupted after stop_new_inputs() (a cancelled or
    # failed sweep raises)
    status: str
    records: tuple[MeasurementRecord, ...]
    total: int
    vantage: VantageCheck
    duration_s: float
    location: Location = dataclasses.field(default_factory=Location)


@cache
def probe_version() -> str:
    """The installed package's version (reads metadata files: call it before the loop)."""
    try:
        return metadata.version("blocking-probe")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def vantage_of(settings: Settings) -> Vantage:
    """What the volunteer declared about the vantage point."""
    v = settings.vantage
    return Vantage(name=v.name, network_type=v.network_type, asn=v.asn, country=v.country)


def host_of(job: Input) -> str:
    """The host an input talks to (the per-host concurrency key)."""
    return job.host


class Sweep:
    """Runs one sweep of a target list into a writer."""

    def __init__(
        self,
        settings: Settings,
        targets: TargetList,
        writer: AsyncWriter,
        progress: Progress | None = None,
        fingerprints: Fingerprints | None = None,
        geoip: GeoIP | None = None,
        keep_evidence: bool = True,
    ) -> None:
        """``geoip``: vantage.geoip_db opened before the loop (else the sweep opens it).
        ``keep_evidence`` False: ``records`` keep verdicts only (the store has the rest)."""
        self.keep_evidence = keep_evidence
        self.settings = settings
        self.geoip = geoip
        self._opened: GeoIP | None = None  # the geoip the sweep opened itself, to close
        self.targets = targets
        self.writer = writer
        self.progress = progress or (lambda done, total, rec: None)
        self.fingerprints = fingerprints or load_bundled()
        self.measurer = Measurer(settings)
        self.records: list[MeasurementRecord] = []
        self.vantage = VantageCheck(())
        self._reference_tls: tuple[ReferenceTLS, ...] = ()  # the vantage's, once it is checked
        self.begun = False  # whether begin_run stored the run
        self.status_recorded = False  # whether finish_run stored how the sweep ended
        self.run_id = uuid.uuid4().hex
        self.total = len(targets.inputs())
        self.version = probe_version()
        c = settings.control
        self.control_setup = ControlSetup(
            doh=len(c.doh), helper=c.helper is not None, references=len(self.references()),
            innocuous_name=c.innocuous_name, throughput=settings.throughput.enabled,
        )  # fmt: skip
        self.throughput = ThroughputTester(
            settings.throughput, self.references(), self.measurer, throughput_urls(targets)
        )
        self.replay = ReplayTester(self.throughput)
        self.location = Location.declared(settings.vantage.asn, settings.vantage.country)
        self.stopping = False  # stop_new_inputs() was called
        self._scheduler: Scheduler[Input, MeasurementRecord] | None = None
        self.lag = lag.LagMonitor()  # the loop's lateness, so busy-ness is not a verdict

    def stop_new_inputs(self) -> None:
        """Start no more inputs; those in flight finish and the run ends "interrupted"."""
        self.stopping = True
        if self._scheduler is not None:
            self._scheduler.stop_new()

    def references(self) -> tuple[str, ...]:
        """Reference URLs: the configured ones, else the target list's."""
        return self.settings.control.reference or self.targets.references

    async def run(self) -> SweepResult:
        """Run the sweep and record how it ended.

        Cancellation (Ctrl-C, SIGTERM) ends it "interrupted", any other exception (a storage
        error, a bug) "failed"; both propagate, and every record already stored is kept.
        """
        started = time.monotonic()
        self.lag.start()
        lag.CURRENT.set(self.lag)  # every task of the sweep, started from here, sees it
        jobs = self.targets.inputs()
        info = RunInfo(
            run_id=self.run_id,
            started_at=dt.datetime.now(dt.UTC),
            vantage=vantage_of(self.settings),
            probe_version=self.version,
            settings=self.settings.public(),
        )
        await self.writer.begin_run(info)
        self.begun = True
        self.vantage = VantageCheck(())
        try:
            status = await self._sweep(info, jobs)
        except asyncio.CancelledError:
            await self._finish("interrupted", failing=True)
            raise
        except BaseException:
            await self._finish("failed", failing=True)
            raise
        await self._finish(status, failing=False)
        took = time.monotonic() - started
        return SweepResult(
            self.run_id, status, tuple(self.records), len(jobs), self.vantage, took, self.location
        )

    async def _sweep(self, info: RunInfo, jobs: tuple[Input, ...]) -> str:
        """Check the vantage, then measure every input; return how the sweep ended."""
        if self.throughput.settings.enabled:
            # The daily budget spans sweeps: what this vantage spent in the last 24 hours.
            self.throughput.spent_today = await self.writer.throughput_bytes_since(
                info.started_at - dt.timedelta(days=1), info.vantage.name
            )
        if self.throughput.urls and self.throughput.settings.enabled:
            # Rule 7's history: the same inputs timed at this vantage in earlier sweeps.
            self.throughput.history = await self.writer.past_rates(
                sorted(self.throughput.urls), info.vantage.name,
                info.started_at - dt.timedelta(days=HISTORY_DAYS),
            )  # fmt: skip
        # The names the budget lets this sweep replay, after the throughput URLs' own tests.
        self.replay.plan(
            jobs, len(self.throughput.urls) * self.throughput.settings.max_bytes_per_test
        )
        self.vantage = await check_vantage(self.measurer, self.references())
        # The same for every input of the sweep: matched against the fingerprints once.
        self._reference_tls = self.vantage.tls_seen(self.fingerprints)
        self.throughput.reference_pages = self.vantage.pages()
        await self._locate()
        if not self.vantage.ok:
            # Rule 2: a dead or captive link contacts no target and claims nothing. Every row
            # handed to the writer at once, in order, so they share its transactions: one
            # awaited write per row cost an offline sweep of the bundled list 0.4 s.
            rows = [self._offline_record(job, self.vantage) for job in jobs]
            await asyncio.gather(
                *(self._store(job, rec) for job, rec in zip(jobs, rows, strict=True))
            )
            return "offline"
        if self.throughput.settings.enabled:
            self.throughput.metered = await metered_reason(self.settings.network.metered)
        # The targets' other TLS contexts (the vantage check's were preloaded), built off
        # the loop while nothing is in flight, so no measurement waits on the trust store.
        await asyncio.to_thread(trust.preload, self.settings.network.ca_bundle)
        if self.stopping:
            return "interrupted"
        lim = self.settings.limits
        in_flight, note = in_flight_budget(lim.concurrency)
        log.info("sweep %s: %s", self.run_id[:8], note)
        limits = Limits(lim.concurrency, lim.per_host, lim.sweep_timeout, in_flight=in_flight)
        self._scheduler = Scheduler(self._work, host_of, self._store, limits, self.lag.busy)
        return (await self._scheduler.run(jobs)).status

    async def _locate(self) -> None:
        """Find where the vantage is, once, after the vantage check; record it with the run."""
        v, declared = self.settings.vantage, self.location
        if declared.asn is not None and declared.country is not None:
            return
        if not self.vantage.ok:
            self.location = location.choose(declared, [], ["not detected: the vantage is offline"])
        else:
            geoip, problem = await self._geoip()
            self.location = await location.detect(
                v, self.measurer.helper, geoip, self.vantage.first_address(),
                self.settings.network.routable, self.settings.limits.http_timeout,
            )  # fmt: skip
            if problem is not None and self.location.problems:
                self.location = dataclasses.replace(
                    self.location, problems=(*self.location.problems, problem)
                )
        await self.writer.set_location(self.run_id, self.location)

    async def _geoip(self) -> tuple[GeoIP | None, str | None]:
        """vantage.geoip_db, open (the one given, else opened now in a thread), or why not."""
        files = self.settings.vantage.geoip_db
        if self.geoip is not None or not files:
            return self.geoip, None
        try:
            self.geoip = self._opened = await asyncio.to_thread(open_geoip, files)
        except GeoIPError as exc:
            return None, f"vantage.geoip_db: {exc}"
        return self.geoip, None

    async def _finish(self, status: str, *, failing: bool) -> None:
        """Close the measurer and record the run's end; shielded, so a stopped sweep says so."""
        await asyncio.shield(self.measurer.aclose())
        await self.lag.stop()
        if self._opened is not None:
            self._opened.close()
        counts: dict[str, int] = dict(Counter(r.verdict.verdict for r in self.records))
        try:
            await asyncio.shield(self.writer.finish_run(self.run_id, status, counts))
        except StoreError:
            if not failing:
                raise
            # The error that stopped the sweep (say, a full disk) is the one to report; the
            # run stays "running" until a later open, finding no writer alive, marks it
            # "aborted".
            self.status_recorded = False
            return
        self.status_recorded = True

    async def _store(self, job: Input, record: MeasurementRecord) -> None:
        await self.writer.record(record)
        kept = record
        if not self.keep_evidence:
            verdict = dataclasses.replace(record.verdict, evidence={})
            kept = dataclasses.replace(record, verdict=verdict, observations=())
        self.records.append(kept)
        self.progress(len(self.records), self.total, record)

    def _offline_record(self, job: Input, vantage: VantageCheck) -> MeasurementRecord:
        ev = InputEvidence(job.kind, job.value, job.host, None)
        ctl = Controls(vantage_ok=False)
        verdict = classify(ev, ctl, self.fingerprints)
        status = as_json(control_status(self.control_setup, ev, ctl))
        verdict = dataclasses.replace(
            verdict,
            evidence={
                **verdict.evidence,
                "references": vantage.summary(),
                "control_status": status,
            },
        )
        return MeasurementRecord(
            self.run_id, job.service, job.category, job.value, verdict,
            dt.datetime.now(dt.UTC), 0.0,
        )  # fmt: skip

    def _body_cap(self, job: Input) -> int | None:
        """A smaller page read for a throughput URL than for other inputs (None: the usual)."""
        # Through a throttle a whole MiB would outlast the HTTP timeout (and read as a
        # connection gone silent), and its bytes would come outside the throughput budget.
        # Its status and first bytes are all the ordinary measurement needs, and it asks for no
        # more: a large resource read in part would keep arriving (queueing behind a throttle,
        # and costing a metered line) until the connection closed.
        if self.throughput.wants(job):
            return min(THROUGHPUT_PAGE_BYTES, self.settings.limits.max_body)
        return None

    async def _work(self, job: Input) -> MeasurementRecord:
        """One input's record; an unexpected error in it is its row, never the sweep's end."""
        col = Collector(reference_tls=self._reference_tls)
        STARVED.set([])  # this input's (this task's) starved failures, filled by attempts
        measured_at = dt.datetime.now(dt.UTC)
        t0 = time.monotonic()
        try:
            return await self._measure(job, col, measured_at, t0)
        except Exception as exc:  # a bug: recorded as such, and the other inputs go on
            return self._record(job, faults.error_verdict(exc), col, measured_at, t0)

    def _record(
        self, job: Input, verdict: Verdict, col: Collector, measured_at: dt.datetime, t0: float
    ) -> MeasurementRecord:
        """The stored row: the verdict and every observation the input collected."""
        observations: tuple[Observation, ...] = (
            *col.dns, *col.tcp, *col.tls, *col.http, *col.throughput, *col.replay,
            *col.hop_observations(),  # the later redirect hops measured as inputs
        )  # fmt: skip
        return MeasurementRecord(
            self.run_id, job.service, job.category, job.value, verdict, measured_at,
            (time.monotonic() - t0) * 1000, observations,
        )  # fmt: skip

    def _classify(self, job: Input, col: Collector, exceeded: bool) -> Verdict:
        ev, ctl = col.evidence(job, exceeded), col.controls(vantage_ok=True)
        return classify(ev, ctl, self.fingerprints, self.settings.network.routable)

    async def _timed_tests(
        self, job: Input, col: Collector, verdict: Verdict, exceeded: bool
    ) -> tuple[dict[str, Any], Verdict]:
        """Rule 7's tests the input earns, and the verdict once they are in.

        A throughput URL found accessible, or any HTTPS page too slow to finish or far slower
        than the references, is timed (probe.engine.throughput); an HTTPS input still
        accessible then has its name replayed to the helper (probe.engine.replay). What each
        says of itself (why it did not run) goes into the evidence.
        """
        extra: dict[str, Any] = {}
        tester = self.throughput
        skipped: str | None = "not asked"
        if verdict.verdict == "accessible" and tester.wants(job):
            skipped = await tester.run(job, col)
            extra["throughput_skipped"] = skipped
        elif tester.escalates(job, col, verdict):
            skipped = await tester.run(job, col, slow=True)
            extra["throughput_skipped"] = skipped
        if skipped is None:
            verdict = self._classify(job, col, exceeded)
        if verdict.verdict == "accessible" and self.replay.wants(job):
            extra["replay_skipped"] = await self.replay.run(job, col)
            if extra["replay_skipped"] is None:
                verdict = self._classify(job, col, exceeded)
        if col.throughput or col.replay or col.replay_innocuous:
            extra["throughput_bytes"] = bytes_of(col)  # also the record's column
        return {k: v for k, v in extra.items() if v is not None}, verdict

    async def _measure(
        self, job: Input, col: Collector, measured_at: dt.datetime, t0: float
    ) -> MeasurementRecord:
        exceeded = False
        try:
            async with asyncio.timeout(self.settings.limits.target_timeout):
                cap = self._body_cap(job)
                await self.measurer.measure(job, col, max_body=cap, ranged=cap is not None)
        except TimeoutError:
            exceeded = True
        verdict = self._classify(job, col, exceeded)
        # Outside the per-input deadline: the wait for the sweep's one turn for timed
        # transfers is not this input's slowness, and every transfer has its own time budget.
        extra, verdict = await self._timed_tests(job, col, verdict, exceeded)
        ctl = col.controls(vantage_ok=True)
        controls = {k: v for k, v in to_jsonable(ctl).items() if v not in ((), [], None)}
        controls.pop("vantage_ok", None)
        controls.pop("kind", None)
        timed = None
        if self.throughput.wants(job) or "throughput_skipped" in extra or col.throughput:
            timed = ThroughputRun(bool(col.throughput), extra.get("throughput_skipped"))
        # One line per control (configured, asked, what came of it) beside the raw answers.
        busy = exceeded and self.lag.starved(t0, time.monotonic())  # lag ate the deadline
        verdict = faults.busy_verdict(verdict, STARVED.get() or [], busy)
        ev = col.evidence(job, exceeded)
        status = control_status(
            self.control_setup, ev, ctl, frozenset(col.asked), timed, extra.get("replay_skipped")
        )
        verdict = dataclasses.replace(
            verdict,
            evidence={
                **verdict.evidence, "controls": controls, "control_status": as_json(status),
                "deadline_exceeded": exceeded, **extra,
            },
        )  # fmt: skip
        record = self._record(job, verdict, col, measured_at, t0)
        return dataclasses.replace(record, throughput_bytes=extra.get("throughput_bytes"))
