"""Rule 3's attempts: a failure is retried, spaced, before it counts, and a timeout the
probe itself caused (too busy to wait, probe.engine.lag) is not an attempt at all."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from measurements.failures import Failure
from probe.config import LimitSettings
from probe.engine import lag

T = TypeVar("T")
TIMEOUT = Failure.GENERIC_TIMEOUT.value  # a wait that ran out
# The failed observations of the current input whose last attempt the probe was too busy to
# time (see attempts): set per input by the sweep, so an input's verdict can say so.
STARVED: contextvars.ContextVar[list[object] | None] = contextvars.ContextVar(
    "probe_starved", default=None
)


async def attempts(
    limits: LimitSettings,
    op: Callable[[], Awaitable[T]],
    failed: Callable[[T], bool],
    sink: list[T],
) -> T:
    """Rule 3: a failure is retried, spaced, before it counts; every attempt is kept.

    A timeout during which the probe itself was too busy to wait (probe.engine.lag) does
    not count as an attempt: it is repeated, at most lag.BUSY_RETRIES times. One still
    starved is noted on the sweep's monitor (``starved_failures``): the probe's fault.
    """
    monitor = lag.current()
    attempt = busy = 0
    while True:
        if attempt or busy:
            await asyncio.sleep(limits.retry_delay)
        start = time.monotonic()
        obs = await op()
        sink.append(obs)
        if not failed(obs):
            return obs
        starved = (
            monitor is not None and timed_out(obs) and monitor.starved(start, time.monotonic())
        )
        if starved and busy < lag.BUSY_RETRIES:
            busy += 1
            continue
        attempt += 1
        if attempt > limits.retries:
            if starved and (noted := STARVED.get()) is not None:
                noted.append(obs)
            return obs


def timed_out(obs: object) -> bool:
    """Whether an observation failed by running out of time (what starvation can cause)."""
    return getattr(obs, "failure", None) == TIMEOUT
