"""How late the event loop runs: the probe's own busy-ness, told apart from the network's delay.

A timed wait (a connect, a handshake, a page, a lookup) is an ``asyncio`` timeout: it measures
wall time, and wall time includes every moment the event loop spent on other inputs' work, or
the machine on other processes. On a busy machine a loopback page can then "time out" although
the network answered at once. A deadline the probe missed because it was busy is the probe's
fault, never the network's (rule 3), so:

- ``LagMonitor`` wakes every ``INTERVAL`` seconds and records how late it woke (the loop's lag,
  whatever caused it: the probe's own callbacks, or a CPU taken by another process);
- ``starved(start, end)`` tells whether lag ate half (``STARVED_SHARE``) of a wait
  that timed out; the engine then repeats that attempt without counting it (at most
  ``BUSY_RETRIES`` times), and an input whose failure stays starved is recorded
  ``inconclusive`` / ``probe.busy``, not as a network failure;
- ``busy()`` tells the scheduler to start no new input while the loop runs late, so the
  probe does not take on more work than it can time.

The monitor of the running sweep is ``CURRENT`` (a context variable: the sweep's tasks see it,
other code sees none and times as before).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import deque

INTERVAL = 0.05  # seconds between wake-ups: small against every timeout, cheap (20 a second)
# A timed-out wait of which lag took at least this share was the probe's doing, not the peer's:
# the peer had less than half the timeout to answer in. (A single wait loses an answer to lag
# only if it came in the last moments; a chain of steps loses the lag between its steps.)
STARVED_SHARE = 0.5
# Extra attempts of a starved wait, beyond limits.retries (rule 3's own retries still apply).
BUSY_RETRIES = 2
# The loop is "busy" (no new input starts) while it wakes this late (seconds).
BUSY_LAG = 0.1
# Wake-ups kept: ten minutes of them, more than any timed wait lasts.
_KEPT = int(600 / INTERVAL)


class LagMonitor:
    """Samples the event loop's lateness while running (``start``/``stop`` on the loop)."""

    def __init__(self) -> None:
        self._woke: deque[tuple[float, float]] = deque(maxlen=_KEPT)  # (woke at, seconds late)
        self._task: asyncio.Task[None] | None = None
        self._last = time.monotonic()  # the last wake-up (or the start)

    def start(self) -> None:
        """Begin sampling (on the running loop)."""
        if self._task is None:
            self._last = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            now = time.monotonic()
            self._woke.append((now, max(0.0, now - self._last - INTERVAL)))
            self._last = now

    def now(self) -> float:
        """How late the loop runs now: the last wake-up's lag, or the overdue one's."""
        overdue = time.monotonic() - self._last - INTERVAL
        last = self._woke[-1][1] if self._woke else 0.0
        return max(last, overdue, 0.0)

    def busy(self) -> bool:
        """Whether the loop runs too late to start more work."""
        return self._task is not None and self.now() > BUSY_LAG

    def lag_during(self, start: float, end: float) -> float:
        """Seconds of lag the loop had between two moments (``time.monotonic``)."""
        total = 0.0
        for woke, late in reversed(self._woke):
            if woke <= start:
                break
            if woke <= end + INTERVAL:
                # A wake-up late by L covers lag spread over the L seconds before it.
                total += min(late, woke - start)
        return total

    def starved(self, start: float, end: float, share: float = STARVED_SHARE) -> bool:
        """Whether lag took at least ``share`` of a wait from ``start`` to ``end``."""
        if self._task is None or end <= start:
            return False
        return self.lag_during(start, end) >= share * (end - start)


CURRENT: contextvars.ContextVar[LagMonitor | None] = contextvars.ContextVar(
    "probe_lag_monitor", default=None
)


def current() -> LagMonitor | None:
    """The running sweep's monitor, if any."""
    return CURRENT.get()
