"""The scheduler's bounds, with real coroutines and real time (short, bounded waits)."""

from __future__ import annotations

import asyncio
import time

from probe.engine.scheduler import Limits, Scheduler


class Recorder:
    """Counts jobs in flight, in total and per host."""

    def __init__(self, delays: dict[str, float]) -> None:
        self.delays = delays
        self.in_flight = 0
        self.peak = 0
        self.per_host: dict[str, int] = {}
        self.peak_per_host: dict[str, int] = {}
        self.done: list[str] = []

    async def work(self, job: str) -> str:
        host = job.split("/")[0]
        self.in_flight += 1
        self.per_host[host] = self.per_host.get(host, 0) + 1
        self.peak = max(self.peak, self.in_flight)
        self.peak_per_host[host] = max(self.peak_per_host.get(host, 0), self.per_host[host])
        try:
            await asyncio.sleep(self.delays.get(job, 0.01))
        finally:
            self.in_flight -= 1
            self.per_host[host] -= 1
        return job

    async def on_done(self, job: str, result: str) -> None:
        self.done.append(result)


def _scheduler(rec: Recorder, **limits: float) -> Scheduler[str, str]:
    return Scheduler(rec.work, lambda j: j.split("/")[0], rec.on_done, Limits(**limits))  # type: ignore[arg-type]


async def test_global_and_per_host_limits_hold() -> None:
    jobs = [f"h{i % 5}/{i}" for i in range(40)]
    rec = Recorder({})
    outcome = await _scheduler(rec, concurrency=6, per_host=2).run(jobs)
    assert outcome.status == "completed" and outcome.done == 40
    assert sorted(rec.done) == sorted(jobs)
    assert rec.peak <= 6
    assert max(rec.peak_per_host.values()) <= 2


async def test_a_slow_job_does_not_hold_up_the_others() -> None:
    jobs = ["slow/0"] + [f"fast{i}/x" for i in range(20)]
    rec = Recorder({"slow/0": 1.0})
    t0 = time.monotonic()
    await _scheduler(rec, concurrency=4, per_host=1).run(jobs)
    assert time.monotonic() - t0 < 1.5
    assert rec.done[-1] == "slow/0"  # everything else finished while it waited


async def test_waiting_for_a_host_does_not_take_a_global_slot() -> None:
    # Ten jobs for one host and one for another: the other must not queue behind them.
    jobs = [f"busy/{i}" for i in range(10)] + ["other/0"]
    rec = Recorder({f"busy/{i}": 0.2 for i in range(10)})
    await _scheduler(rec, concurrency=2, per_host=1).run(jobs)
    assert rec.done.index("other/0") <= 1


async def test_sweep_deadline_stops_and_keeps_what_finished() -> None:
    jobs = ["a/0", "b/0", "c/0"]
    rec = Recorder({"c/0": 5.0})
    t0 = time.monotonic()
    outcome = await _scheduler(rec, concurrency=3, per_host=1, sweep_timeout=0.3).run(jobs)
    assert time.monotonic() - t0 < 2.0
    assert outcome.status == "timed_out" and outcome.done == 2
    assert sorted(rec.done) == ["a/0", "b/0"] and rec.in_flight == 0


async def test_cancellation_reports_interrupted() -> None:
    rec = Recorder({"a/0": 5.0})
    scheduler = _scheduler(rec, concurrency=1, per_host=1)
    task = asyncio.create_task(scheduler.run(["a/0"]))
    await asyncio.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert scheduler.outcome.status == "interrupted" and rec.in_flight == 0
