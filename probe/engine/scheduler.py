"""Runs a plan of jobs with bounded concurrency, in total and per host, under deadlines.

A slow or silent job holds only its own slot: every job has its own deadline, and the sweep
as a whole has one too. Results are handed to ``on_done`` as each job finishes, so what
finished is kept whatever happens to the rest (a timeout, Ctrl-C).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

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


class Scheduler(Generic[J, R]):
    """Runs ``worker(job)`` for every job; ``key(job)`` names the host a job talks to."""

    def __init__(
        self,
        worker: Callable[[J], Awaitable[R]],
        key: Callable[[J], Hashable],
        on_done: Callable[[J, R], Awaitable[None]],
        limits: Limits,
    ) -> None:
        self._worker = worker
        self._key = key
        self._on_done = on_done
        self._limits = limits
        self._global = asyncio.Semaphore(limits.concurrency)
        self._hosts: dict[Hashable, asyncio.Semaphore] = {}
        self.done = 0
        # Set by stop_new(): jobs not yet started are skipped, those in flight go on.
        self.stopping = False

    def stop_new(self) -> None:
        """Start no more jobs (the daemon's SIGTERM); the run then ends "interrupted"."""
        self.stopping = True

    async def _one(self, job: J) -> None:
        host = self._hosts.setdefault(self._key(job), asyncio.Semaphore(self._limits.per_host))
        # The host slot first: a job waiting for its host must not hold a global slot that
        # a job for another host could use.
        async with host, self._global:
            if self.stopping:
                return
            result = await self._worker(job)
        await self._on_done(job, result)
        self.done += 1

    async def run(self, jobs: Sequence[J]) -> Outcome:
        """Run every job; returns when all finished, the sweep deadline passed, or cancelled."""
        tasks = [asyncio.create_task(self._one(job)) for job in jobs]
        status = "completed"
        try:
            async with asyncio.timeout(self._limits.sweep_timeout):
                for task in asyncio.as_completed(tasks):
                    await task
            if self.stopping:
                status = "interrupted"
        except TimeoutError:
            status = "timed_out"
        except asyncio.CancelledError:
            status = "interrupted"
            raise
        finally:
            for task in tasks:
                task.cancel()
            # Bounded: cancelled measurements unwind at their next await.
            await asyncio.wait(tasks, timeout=5.0) if tasks else None
            self.outcome = Outcome(status, self.done, len(jobs))
        return self.outcome
