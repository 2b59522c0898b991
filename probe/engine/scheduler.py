"""Runs a plan of jobs with bounded concurrency, in total and per host, under deadlines.

A slow or silent job holds only its own slot: every job has its own deadline, and the sweep
as a whole has one too. Results are handed to ``on_done`` as each job finishes, so what
finished is kept whatever happens to the rest (a timeout, Ctrl-C).

``concurrency`` bounds the jobs *working* at once. A job still running after ``park_after``
seconds is waiting (on a silent socket, a timeout, a retry's pause), not working: it gives
its slot to the next job and goes on holding only its sockets, up to ``in_flight`` jobs in
all (the open-file budget). The per-host limit holds for every job, parked or not. While
``busy()`` says the event loop runs late, no new job starts: the probe takes on no more
than it can time. Jobs start in plan order, one task each as a slot frees, so a plan of any
length costs memory for the jobs in flight only.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

# Jobs that start even while the loop runs late (busy() only holds back the rest).
MIN_WORKING = 4
J = TypeVar("J")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run of jobs ended."""

    status: str  # "completed", "timed_out" or "interrupted"
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class Limits:
    """The scheduler's bounds."""

    concurrency: int = 128
    per_host: int = 2
    sweep_timeout: float | None = None
    park_after: float = 1.0  # seconds a job works before it counts as waiting
    in_flight: int = 1024  # jobs started and not finished, working or waiting


class Scheduler(Generic[J, R]):
    """Runs ``worker(job)`` for every job; ``key(job)`` names the host a job talks to."""

    def __init__(
        self,
        worker: Callable[[J], Awaitable[R]],
        key: Callable[[J], Hashable],
        on_done: Callable[[J, R], Awaitable[None]],
        limits: Limits,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self._worker = worker
        self._key = key
        self._on_done = on_done
        self._limits = limits
        self._busy = busy
        self._working = asyncio.Semaphore(limits.concurrency)
        self._room = asyncio.Semaphore(limits.in_flight)
        # Per host: jobs holding its slots, and those waiting for one (in plan order).
        self._running: dict[Hashable, int] = {}
        self._queued: dict[Hashable, deque[J]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._active = 0  # jobs holding a working slot
        self._fed = False  # every job of the plan started or queued
        self._error: BaseException | None = None  # the first job that raised (a store error)
        self._settled = asyncio.Event()  # all jobs done, or one raised
        self._gate = asyncio.Lock()  # jobs pass the busy gate one at a time
        self.done = 0
        # Set by stop_new(): jobs not yet started are skipped, those in flight go on.
        self.stopping = False

    def stop_new(self) -> None:
        """Start no more jobs (the daemon's SIGTERM); the run then ends "interrupted"."""
        self.stopping = True

    async def _one(self, job: J, host: Hashable) -> None:
        """One job: a working slot (until it finishes or parks), then the host's next job."""
        try:
            await self._working.acquire()
            parked = False

            def park() -> None:
                nonlocal parked
                if not parked:
                    parked = True
                    self._working.release()
                    self._active -= 1

            self._active += 1
            try:
                # One job at a time through the gate, so a loop that stops running late
                # lets jobs in one by one, not all those that waited at once; a few jobs
                # always work, so a machine busy for good still makes progress.
                async with self._gate:
                    while self._held_back():  # noqa: ASYNC110 - polls the loop's lag
                        await asyncio.sleep(0.01)
                if self.stopping:
                    return
                timer = asyncio.get_running_loop().call_later(self._limits.park_after, park)
                try:
                    result = await self._worker(job)
                finally:
                    timer.cancel()
            finally:
                park()
            await self._on_done(job, result)
            self.done += 1
        finally:
            self._room.release()
            queued = self._queued.get(host)
            if queued and not self.stopping:
                self._spawn(queued.popleft(), host)  # the host's slot passes on
            else:
                self._running[host] -= 1

    def _held_back(self) -> bool:
        """Whether a job about to work waits: the loop runs late and enough jobs run."""
        # Every job in flight counts, parked or not: a parked job still works at times (a
        # retry, a control), and parking is no reason to start more while the loop is late.
        return self._busy() and len(self._tasks) > MIN_WORKING and not self.stopping

    def _spawn(self, job: J, host: Hashable) -> None:
        task = asyncio.create_task(self._one(job, host))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        """A job ended: an error ends the run (as the first to raise), as does the last job."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._error = self._error or exc
        if self._error is not None or (self._fed and not self._tasks):
            self._settled.set()

    async def _feed(self, jobs: Sequence[J]) -> None:
        """Start the jobs in plan order, at most ``in_flight`` unfinished at once; a job
        whose host has no free slot waits in that host's queue, holding nothing."""
        try:
            for job in jobs:
                if self.stopping:
                    break
                await self._room.acquire()
                host = self._key(job)
                if self._running.get(host, 0) < self._limits.per_host:
                    self._running[host] = self._running.get(host, 0) + 1
                    self._spawn(job, host)
                else:
                    self._queued.setdefault(host, deque()).append(job)
        except Exception as exc:  # a bug in the plan: the run's error, as a job's would be
            self._error = self._error or exc
        self._fed = True
        if self._error is not None or not self._tasks:
            self._settled.set()

    async def run(self, jobs: Sequence[J]) -> Outcome:
        """Run every job; returns when all finished, the sweep deadline passed, or cancelled."""
        status = "completed"
        feeder = asyncio.ensure_future(self._feed(jobs))
        try:
            async with asyncio.timeout(self._limits.sweep_timeout):
                await self._settled.wait()
            if self._error is not None:
                raise self._error
            if self.stopping:
                status = "interrupted"
        except TimeoutError:
            status = "timed_out"
        except asyncio.CancelledError:
            status = "interrupted"
            raise
        finally:
            feeder.cancel()
            self.stopping = True  # a cancelled job starts no queued one
            for task in self._tasks:
                task.cancel()
            # Bounded: cancelled measurements unwind at their next await.
            await asyncio.wait([feeder, *self._tasks], timeout=5.0)
            self.outcome = Outcome(status, self.done, len(jobs))
        return self.outcome


# Sockets one job may hold at once: the page, a control's, a lookup's, a spare.
FILES_PER_JOB = 4
FILES_KEPT = 64  # for the database, the CA bundle, the log, the DoH and helper connections


def in_flight_budget(concurrency: int) -> tuple[int, str]:
    """How many jobs may be in flight (working or parked), and a line saying why.

    The open-file soft limit is raised to the hard limit where the system allows it (a
    parked job holds its sockets); the budget is what that limit leaves, at least
    ``concurrency`` and at most 8 times it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    note = f"open-file limit {soft}"
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = 1 << 16 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
            note = f"open-file limit raised from {soft} to {max(soft, wanted)}"
            soft = max(soft, wanted)
        except (ValueError, OSError) as exc:
            note = f"open-file limit {soft} (could not raise it to {wanted}: {exc})"
    budget = max(concurrency, min(8 * concurrency, (soft - FILES_KEPT) // FILES_PER_JOB))
    return budget, f"{note}: up to {budget} inputs in flight, {concurrency} working"


class HostTurns:
    """At most ``per_host`` redirect hops at once to any one host (the scheduler bounds the
    inputs' own hosts; a redirect may lead many inputs to one other host).

    Separate from the jobs' slots, and held only for one hop, never while waiting for
    another, so no two inputs can wait on each other. A host's entry lives while someone
    holds or waits for its turn, so the table stays as small as the hops in flight.
    """

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._turns: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, host: str) -> AsyncIterator[None]:
        """Wait for a turn at ``host``, hold it for the body."""
        sem, users = self._turns.setdefault(host, (asyncio.Semaphore(self._per_host), [0]))
        users[0] += 1
        try:
            async with sem:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._turns[host]

    def __len__(self) -> int:
        return len(self._turns)
