"""``probe daemon``'s loop: sweeps of each group in-process, one at a time, on the schedule.

One asyncio loop holds the database open (and so its writer lock) for the daemon's life and
runs the existing Sweep for a group when probe.daemon.schedule says it is due. Beside it:
a watcher that notices a resume from sleep (CLOCK_BOOTTIME ran ahead of CLOCK_MONOTONIC), a
wall-clock jump (logged: the schedule is on the monotonic clock), a new network
(probe.daemon.network) or, during an outage, the reference hosts answering again; each
makes every group due now. Signals: SIGTERM/SIGINT stop new inputs and give those in flight
``daemon.stop_deadline`` seconds; SIGHUP reloads config and targets between sweeps (a bad
new config is reported and the old one kept). systemd hears READY, STATUS, WATCHDOG and
STOPPING (probe.daemon.notify).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from probe.classify.fingerprints import Fingerprints
from probe.config import ConfigError
from probe.daemon import schedule
from probe.daemon.groups import GroupsConfig, Loaded, Loader, without_throughput
from probe.daemon.network import NetworkState, read_network
from probe.daemon.notify import Notifier
from probe.daemon.upkeep import Upkeep
from probe.engine.steps import Measurer
from probe.engine.sweep import Sweep
from probe.engine.vantage import check_vantage
from probe.store.daemon_state import GroupRow, SweepRow
from probe.store.database import StoreError
from probe.store.writer import AsyncWriter
from targets.model import TargetErrors


@dataclass(slots=True)
class LastSweep:
    """A group's last sweep as status shows it (UTC)."""

    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    run_id: str | None = None
    status: str | None = None


def log(message: str) -> None:
    """One line on stderr (journald keeps it under systemd)."""
    print(f"probe daemon: {message}", file=sys.stderr, flush=True)


def boottime() -> float:
    """CLOCK_BOOTTIME: runs on during suspend, unlike CLOCK_MONOTONIC."""
    return time.clock_gettime(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))


class Daemon:
    """Runs the schedule until stopped; ``run()`` returns the exit code."""

    def __init__(
        self,
        loaded: Loaded,
        loader: Loader,
        writer: AsyncWriter,
        fingerprints: Fingerprints,
        notifier: Notifier | None = None,
        rand: Callable[[], float] = random.random,
        pruner: Callable[[], object] | None = None,
        uploader: Callable[[], object] | None = None,
        upload_every: float = 300.0,
    ) -> None:
        self.config = GroupsConfig(loaded)
        self.loader = loader
        self.writer = writer
        self.fingerprints = fingerprints
        self.notifier = notifier or Notifier()
        self.upkeep = Upkeep(self.notifier, log, pruner, uploader, upload_every)
        self.rand = rand
        self.started_at = dt.datetime.now(dt.UTC)
        self.states: dict[str, schedule.GroupState] = {}
        self.last: dict[str, LastSweep] = {}
        self.network: NetworkState | None = None
        # The AS number the last sweep detected (helper whoami, geoip_db), when none is
        # declared: part of the network, so a new ASN behind the same route is a new network.
        self.detected_asn: int | None = None
        self.outage_open = False
        self.stopping = False
        self.reload_asked = False
        self.sweep: Sweep | None = None
        self.sweep_task: asyncio.Task[object] | None = None
        self.wake = asyncio.Event()

    # --- the clocks ------------------------------------------------------------------------

    @staticmethod
    def mono() -> float:
        """The schedule's clock."""
        return time.monotonic()

    def wall_of(self, mono: float) -> dt.datetime:
        """A monotonic time as UTC wall time (for status)."""
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=mono - self.mono())

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> int:
        """Sweep on schedule until SIGTERM/SIGINT; 0 then, 4 if the store failed."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.ask_reload)
        draws = {name: self.rand() for name in self.config.plans}
        self.states = schedule.start(self.config.plans.values(), self.mono(), draws)
        self.network = await asyncio.to_thread(self._read_network)
        helpers: list[asyncio.Task[None]] = []
        code = 0
        try:
            await self._save()
            self.notifier.ready(self._status_line())
            helpers += [asyncio.create_task(self._watch()), asyncio.create_task(self._watchdog())]
            log(f"started (pid {os.getpid()}): {self._plan_line()}")
            while not self.stopping:
                if self.reload_asked:
                    await self._reload()
                name = schedule.due(self.states, self.mono())
                if name is None:
                    await self._wait(schedule.next_wake(self.states))
                else:
                    await self._sweep(name)
                    if not self.stopping:
                        await self.upkeep.after_sweep(self._status_line)
        except StoreError as exc:
            log(f"the store failed: {exc}; stopping")
            code = 4
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self.notifier.stopping("stopping")
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        if code == 0:
            log("stopped; every input that finished is stored")
        return code

    async def _wait(self, until: float | None) -> None:
        self.wake.clear()
        timeout = None if until is None else max(0.0, until - self.mono())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)

    def stop(self) -> None:
        """SIGTERM/SIGINT: no new work; in-flight inputs get the stop deadline."""
        if self.stopping:
            return
        self.stopping = True
        self.wake.set()
        self.notifier.stopping("stopping: finishing the inputs in flight")
        self._stop_sweep()

    def _stop_sweep(self) -> None:
        """The sweep in progress starts no new input, and is cancelled after the deadline."""
        if self.sweep is not None and self.sweep_task is not None:
            self.sweep.stop_new_inputs()
            task = self.sweep_task
            deadline = self.config.loaded.daemon.stop_deadline
            asyncio.get_running_loop().call_later(deadline, task.cancel)

    def ask_reload(self) -> None:
        """SIGHUP: reload config and targets once the current sweep ends."""
        self.reload_asked = True
        self.wake.set()

    def prompt(self, why: str) -> None:
        """Something changed: every group is due now (one sweep each, one at a time)."""
        log(f"{why}: sweeping promptly")
        self.states = schedule.prompt(self.states, self.mono())
        self.wake.set()

    # --- one sweep -------------------------------------------------------------------------

    async def _sweep(self, name: str) -> None:
        plan, state = self.config.plans[name], self.states[name]
        now = self.mono()
        throughput = schedule.wants_throughput(plan, state, now)
        targets = self.config.targets[name]
        self.states[name] = schedule.began(state, now, throughput)
        if not targets.services:
            self.states[name] = schedule.finished(plan, self.states[name], self.mono(), self.rand())
            return
        settings = self.config.loaded.settings
        started_at = dt.datetime.now(dt.UTC)
        sweep = Sweep(
            settings if throughput else without_throughput(settings), targets, self.writer,
            None, self.fingerprints, keep_evidence=False,  # the store keeps the evidence
        )  # fmt: skip
        planned_at = self.wall_of(state.due)
        self.last[name] = LastSweep(started_at, None, sweep.run_id, "running")
        await self._save()
        self.notifier.status(f"sweeping {name} ({len(targets.inputs())} inputs)")
        self.sweep, self.sweep_task = sweep, asyncio.create_task(sweep.run())
        if self.stopping:  # a signal between the loop's check and here
            self._stop_sweep()
        status = "interrupted"
        try:
            result = await self.sweep_task
            status = getattr(result, "status", "completed")
        except asyncio.CancelledError:
            if not self.stopping:
                raise
        finally:
            self.sweep = self.sweep_task = None
        self._note_detected_asn(sweep.location.asn)
        network = self.network.digest() if self.network else None
        await self.writer.record_sweep(
            SweepRow(sweep.run_id, name, planned_at, started_at, network, throughput)
        )
        await self._outage(status, started_at, network)
        self.last[name] = LastSweep(started_at, dt.datetime.now(dt.UTC), sweep.run_id, status)
        self.states[name] = schedule.finished(plan, self.states[name], self.mono(), self.rand())
        took = (dt.datetime.now(dt.UTC) - started_at).total_seconds()
        log(f"swept {name}: {status}, {len(sweep.records)} inputs in {took:.1f} s")
        await self._save()
        self.notifier.status(self._status_line())

    async def _outage(self, status: str, at: dt.datetime, network: str | None) -> None:
        """Outages are data: an offline sweep opens one, the next online sweep ends it."""
        vantage = self.config.loaded.settings.vantage.name
        if status == "offline":
            if await self.writer.open_outage(vantage, at, "sweep", network):
                log("no reference host answered: an outage began")
            self.outage_open = True
        elif status in ("completed", "timed_out"):
            if await self.writer.close_outages(vantage, at):
                log("the reference hosts answer again: the outage ended")
            self.outage_open = False

    async def _save(self) -> None:
        """The schedule as probe status reads it."""
        rows = []
        for name, plan in self.config.plans.items():
            st, last = self.states[name], self.last.get(name, LastSweep())
            running = last.status == "running"
            rows.append(GroupRow(
                name, os.getpid(), self.started_at, plan.every, last.started, last.finished,
                last.run_id, last.status, None if running else self.wall_of(st.due),
            ))  # fmt: skip
        await self.writer.save_groups(rows)

    # --- reload ----------------------------------------------------------------------------

    async def _reload(self) -> None:
        self.reload_asked = False
        self.notifier.reloading()
        try:
            loaded = await asyncio.to_thread(self.loader)
        except (ConfigError, TargetErrors, ValueError, OSError) as exc:
            log(f"reload failed, keeping the previous config: {exc}")
            self.notifier.ready(self._status_line())
            return
        old_db = self.config.loaded.settings.storage.db
        if loaded.settings.storage.db != old_db:
            log("storage.db changed: the daemon keeps the database it opened (restart it)")
        self.config = GroupsConfig(loaded)
        draws = {name: self.rand() for name in self.config.plans}
        self.states = schedule.reconcile(
            self.states, self.config.plans.values(), self.mono(), draws
        )
        await self._save()
        log(f"reloaded: {self._plan_line()}")
        self.notifier.ready(self._status_line())

    # --- watching --------------------------------------------------------------------------

    def _note_detected_asn(self, asn: int | None) -> None:
        """A sweep found the AS it measured from: the network it is attributed to says so.

        No prompt: that sweep already measured on it. A declared vantage.asn wins."""
        if self.config.loaded.settings.vantage.asn is not None or asn is None:
            return
        self.detected_asn = asn
        if self.network is not None and self.network.asn != asn:
            self.network = dataclasses.replace(self.network, asn=asn)

    def _read_network(self) -> NetworkState:
        s = self.config.loaded.settings
        return read_network(s.network.resolver, s.vantage.asn or self.detected_asn)

    async def _watch(self) -> None:
        """Every network_poll seconds: sleep, clock jumps, a new network, the link back."""
        mono, boot, wall = self.mono(), boottime(), time.time()
        while True:
            await asyncio.sleep(self.config.loaded.daemon.network_poll)
            m, b, w = self.mono(), boottime(), time.time()
            asleep = schedule.slept(b - boot, m - mono)
            jump = schedule.clock_jump((w - wall) - asleep, m - mono)
            mono, boot, wall = m, b, w
            if jump:
                log(f"the wall clock was set {jump:+.0f} s; the schedule goes on")
            network = await asyncio.to_thread(self._read_network)
            was_online = self.network is None or self.network.online
            if was_online and not network.online and not self.outage_open:
                await self._route_lost(network)
            if asleep:
                self.network = network
                self.prompt(f"resumed after {asleep:.0f} s asleep")
            elif network != self.network:
                if self.network is not None and network.moved_from(self.network):
                    # A new route or resolver: the detected ASN may be another's now.
                    self.detected_asn = None
                    declared = self.config.loaded.settings.vantage.asn
                    network = dataclasses.replace(network, asn=declared)
                self.network = network
                self.prompt("the network changed")
            elif self.outage_open and self.sweep is None and await self._references_answer():
                self.prompt("the reference hosts answer again")

    async def _route_lost(self, network: NetworkState) -> None:
        """The last default route went away: an outage began now, before a sweep can tell.

        Only at that change: a sweep that reaches the references after it ends the outage,
        and no route is a new one until a route has come back first."""
        vantage = self.config.loaded.settings.vantage.name
        at = dt.datetime.now(dt.UTC)
        if await self.writer.open_outage(vantage, at, "route", network.digest()):
            log("no default route: an outage began")
        self.outage_open = True

    async def _references_answer(self) -> bool:
        settings = self.config.loaded.settings
        references = settings.control.reference or self.config.loaded.targets.references
        measurer = Measurer(settings)
        try:
            return (await check_vantage(measurer, references)).ok
        finally:
            await measurer.aclose()

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog
        if interval is None:
            return
        while True:
            self.notifier.ping()
            await asyncio.sleep(interval)

    # --- words -----------------------------------------------------------------------------

    def _plan_line(self) -> str:
        return ", ".join(
            f"{n} every {p.every:g} s ({len(self.config.targets[n].services)} services)"
            for n, p in self.config.plans.items()
        )

    def _status_line(self) -> str:
        name = schedule.due(self.states, float("inf"))
        when = schedule.next_wake(self.states)
        if name is None or when is None:
            return "idle"
        nxt = min(self.states, key=lambda n: self.states[n].due)
        return f"next: {nxt} in {max(0.0, when - self.mono()):.0f} s"
