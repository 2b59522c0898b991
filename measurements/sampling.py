"""A transfer's progress, sampled on a fixed grid: what every timed transfer records.

The throughput download (measurements.throughput), the SNI replay (measurements.replay) and
the helper's side of a replay upload (probe.helper.replay) all count bytes as they arrive
and note ``(ms, bytes so far)`` every ``every`` seconds, so that an analysis can see a rate
change within one transfer (probe.classify.rates). One sampler for all three, so that their
samples mean the same thing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


class Sampler:
    """Bytes counted so far and their samples (ms on ``elapsed``'s clock, default: since
    ``start``, which a caller may move to where its transfer begins)."""

    def __init__(self, elapsed: Callable[[], float] | None = None) -> None:
        self.start = time.monotonic()
        self._elapsed = elapsed
        self.count = 0
        self.first_byte_ms: float | None = None
        self.samples: list[tuple[float, int]] = []

    def elapsed(self) -> float:
        """Milliseconds on the sampler's clock."""
        if self._elapsed is not None:
            return self._elapsed()
        return (time.monotonic() - self.start) * 1000.0

    def add(self, n: int) -> None:
        """Count ``n`` more bytes (the first ones also time the first byte)."""
        if n and self.first_byte_ms is None:
            self.first_byte_ms = round(self.elapsed(), 1)
        self.count += n

    def sample(self) -> None:
        """Note the count now (once per distinct millisecond tenth)."""
        now = round(self.elapsed(), 1)
        if not self.samples or now > self.samples[-1][0]:
            self.samples.append((now, self.count))

    async def run(self, every: float) -> None:
        """Sample every ``every`` seconds until cancelled, sleeping to each tick of a fixed
        grid (so that late wake-ups do not add up)."""
        loop = asyncio.get_running_loop()
        begin, tick = loop.time(), 0
        while True:
            tick += 1
            await asyncio.sleep(max(0.0, begin + tick * every - loop.time()))
            self.sample()


async def sampled(sampler: Sampler, every: float, work: Awaitable[Any]) -> None:
    """Run ``work`` with ``sampler`` sampling meanwhile, and once more at its end."""
    task = asyncio.ensure_future(sampler.run(every))
    try:
        await work
    finally:
        sampler.sample()  # the last count, at the end of the read
        task.cancel()
        # wait, not await: the sampler's cancellation is not ours to raise, and ours (a
        # deadline, a sweep cancelled) must still propagate.
        await asyncio.wait([task])
