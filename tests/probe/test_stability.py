"""stability() on synthetic transfers whose bytes become readable in TLS records.

No network: a rate profile (bytes per second over time) is integrated in 1 ms steps and sampled
every 100 ms as measurements.throughput samples; the reader sees only whole records, as a TLS
client does, so at low rates 16 KiB records arrive as jumps with empty intervals between.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from probe.classify.rates import Sample, stability
from probe.classify.throttle import FLAT_CV

FAST = 2_000_000  # bytes/s: 16 Mbit/s
SLOW = 16_000  # bytes/s: 128 kbit/s, a policer's rate
FULL = 16_384  # bytes: the largest TLS record, what servers send in bulk
SMALL = 1_024

Profile = Callable[[float], float]  # seconds since the body began -> bytes/s


def flat(rate: float) -> Profile:
    return lambda t: rate


def wandering(mean: float) -> Profile:
    """Congestion: a rate that swings between 0.375 and 1.625 times ``mean``, period 2.1 s."""
    return lambda t: mean * (1 + math.sin(3 * t) / 1.6)


def fall(at: float, fast: float, slow: float) -> Profile:
    return lambda t: fast if t < at else slow


def transfer(
    profile: Profile,
    seconds: float,
    record: int = SMALL,
    *,
    noise: float = 0.0,
    jitter_ms: float = 0.0,
    seed: int = 0,
) -> list[Sample]:
    """Points as points() gives them: the origin, then a sample every 100 ms (± jitter).

    ``noise`` scales each millisecond's bytes by up to that share either way.
    """
    rnd = random.Random(seed)
    origin = 50.0
    pts: list[Sample] = [(origin, 0)]
    got = 0.0
    steps = round(seconds * 1000)
    k = 1
    due = 100.0 + jitter_ms * (rnd.random() * 2 - 1)
    for ms in range(1, steps + 1):
        got += profile(ms / 1000) / 1000 * (1 + noise * (rnd.random() * 2 - 1))
        if ms >= due or ms == steps:
            pts.append((origin + ms, int(got // record) * record))
            k += 1
            due = 100.0 * k + jitter_ms * (rnd.random() * 2 - 1)
    return pts


def noisy(profile: Profile, seconds: float, record: int = SMALL) -> list[Sample]:
    """A transfer whose rate jitters by half either way and whose sampler runs ±15 ms late."""
    return transfer(profile, seconds, record, noise=0.5, jitter_ms=15)


FLAT = [
    ("128 kbit/s in 16 KiB records", transfer(flat(SLOW), 9, FULL)),
    ("128 kbit/s in 16 KiB records, 8 s", transfer(flat(SLOW), 8, FULL)),
    ("128 kbit/s in 16 KiB records, noisy", noisy(flat(SLOW), 10, FULL)),
    ("512 kbit/s in 16 KiB records", transfer(flat(4 * SLOW), 8, FULL)),
    ("512 kbit/s in 16 KiB records, noisy", noisy(flat(4 * SLOW), 8, FULL)),
    ("128 kbit/s in 1 KiB records", transfer(flat(SLOW), 5, noise=0.3, jitter_ms=10)),
    ("16 Mbit/s in 16 KiB records", transfer(flat(FAST), 5, FULL, noise=0.3, jitter_ms=10)),
]  # fmt: skip

WANDERING = [
    ("congestion in 1 KiB records", transfer(wandering(1.6 * SLOW), 8)),
    ("congestion in 16 KiB records, ~200 kbit/s", transfer(wandering(1.6 * SLOW), 10, FULL)),
    ("congestion in 16 KiB records, noisy", noisy(wandering(1.6 * SLOW), 10, FULL)),
]  # fmt: skip

SHORT = [
    ("0.3 s", transfer(flat(SLOW), 0.3)),
    ("two records", transfer(flat(SLOW), 2.5, FULL)),
    ("nothing readable", transfer(flat(SLOW), 0.9, FULL)),
    ("no samples after the origin", [(50.0, 0)]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "pts"), FLAT, ids=[c[0] for c in FLAT])
def test_a_policer_reads_flat(name: str, pts: list[Sample]) -> None:
    cv = stability(pts)
    assert cv is not None and cv <= FLAT_CV


@pytest.mark.parametrize(("name", "pts"), WANDERING, ids=[c[0] for c in WANDERING])
def test_congestion_reads_unsteady(name: str, pts: list[Sample]) -> None:
    cv = stability(pts)
    assert cv is not None and cv > FLAT_CV


@pytest.mark.parametrize(("name", "pts"), SHORT, ids=[c[0] for c in SHORT])
def test_too_short_to_tell(name: str, pts: list[Sample]) -> None:
    assert stability(pts) is None


@pytest.mark.parametrize("record", [SMALL, FULL])
def test_counted_from_start(record: int) -> None:
    # Two seconds fast, then policed: only the policed part is in question.
    pts = transfer(fall(2.0, FAST, SLOW), 9, record)
    start = next(i for i, p in enumerate(pts) if p[0] >= 50.0 + 2000)
    whole, policed = stability(pts), stability(pts, start)
    assert whole is not None and whole > FLAT_CV
    assert policed is not None and policed <= FLAT_CV
