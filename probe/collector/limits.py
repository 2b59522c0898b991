"""What bounds the collector's use: a rate per token, and a cap on uploads in flight.

Both live in the process: with several collectors behind one reverse proxy each applies
its own (a token may then upload N times the rate, which the cap on the database's
connections still bounds). Nothing here is kept across a restart, and nothing names an
address: the rate is per token, never per client.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class TokenRate:
    """A token bucket per upload token: ``rate`` uploads a second, bursts of ``burst``."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, name: str) -> float:
        """0 if the token may upload now (and count it), else the seconds until it may."""
        now = self.clock()
        bucket = self._buckets.setdefault(name, _Bucket(float(self.burst), now))
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def retry_after(seconds: float) -> str:
    """A Retry-After header's value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


@dataclass(slots=True)
class InFlight:
    """How many uploads are being handled; more than ``cap`` are turned away (503)."""

    cap: int
    now: int = 0

    def enter(self) -> bool:
        """Count one in, unless the cap is reached."""
        if self.now >= self.cap:
            return False
        self.now += 1
        return True

    def leave(self) -> None:
        """Count one out."""
        self.now -= 1
