"""Rates of sampled transfers and the statistics the throttling rule rests on. Pure arithmetic.

A transfer is a series of samples ``(t_ms, cumulative_bytes)`` (measurements.throughput) that
starts at an origin ``(first_byte_ms, 0)``: the response headers, when the body begins. Rates
are kilobits per second (bytes * 8 / ms).

- ``ks_2samp``: the two-sample Kolmogorov-Smirnov statistic D and its asymptotic p-value
  (Numerical Recipes' ``probks`` with Stephens' small-sample correction), written out here
  so the probe needs no scientific stack. Samples taken 100 ms apart within one transfer are
  not independent, so the p-value flatters; the rule never rests on it alone.
- ``change_point``: where a transfer's rate fell by a large factor and stayed down (a
  throttle triggered after the first N bytes), as a byte offset.
- ``stability``: the coefficient of variation of the rate over short windows once slow start
  is over. A policer converges on a flat rate (low CV); congestion wanders (high CV).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

Sample = tuple[float, int]  # (ms since the request started, body bytes so far)

# A drop must be at least this steep (before/after) to be a change point...
CHANGE_FACTOR = 4.0
# ...come after at least this many body bytes (less is a first TLS record or TCP window that
# arrived with the headers, not a byte-count trigger)...
CHANGE_MIN_BYTES = 32 * 1024
# ...and hold for at least this many sample intervals.
CHANGE_MIN_AFTER = 4
# Sample intervals a stability window spans at least (it runs on to the next arrival point).
# Its ends are timed to within an interval, so shorter windows are noisier; longer ones merge
# records and flatten a rate that wanders: at 4, 16 KiB records every ~4 samples (~300 kbit/s)
# still land in windows of their own, and a 2 s wander at ~200 kbit/s stays visible (at 5 it
# read as low as CV 0.24 in tests/probe/test_stability.py).
STABILITY_WINDOW = 4
STABILITY_SKIP_MS = 1000.0  # slow start: skip the first second (or a quarter of a short transfer)


def rate_kbps(start: Sample, end: Sample) -> float:
    """The rate between two samples, kbit/s (0 when no time passed)."""
    dt = end[0] - start[0]
    return (end[1] - start[1]) * 8 / dt if dt > 0 else 0.0


def points(samples: Sequence[Sample], origin_ms: float, complete: bool = False) -> list[Sample]:
    """The origin (the body's start, 0 bytes) and every later sample, in time order.

    ``complete``: the read ended because the body did (or reached its byte cap). Its last
    bytes had then arrived by the first sample that counted them all; a sample after that one
    (the sampler's tick between the last chunk and the end of the read, 0.3 ms later on
    loopback) times the reader, not the network, and is dropped: its interval, 0 bytes in no
    time, read as a rate of 0 kbit/s, slower than any throttle, in the fast kind's pooled
    rates. A read ended by its time budget keeps its trailing samples: a stall up to the
    deadline is what the network did.
    """
    pts = [(origin_ms, 0), *(s for s in samples if s[0] > origin_ms)]
    if complete:
        while len(pts) > 2 and pts[-1][1] == pts[-2][1]:
            pts.pop()
    return pts


def rate_from(pts: Sequence[Sample], i: int) -> float | None:
    """The rate of what arrived after point ``i``, to the end of the read; None if nothing did.

    Where the count stalls between samples, bytes become readable in quanta that come an
    interval or more apart (a TLS record when whole: 16 KiB is 131 ms at 1 Mbit/s), so the
    bytes counted after ``i`` began their way before it: at the last arrival (a sample whose
    count grew) at or before ``i``, at some moment of the interval that ends there. The span
    then starts at that interval's middle; starting at ``i`` overstated a slow rate by up to
    one interval over the transfer (+7% at 1 Mbit/s in the lab). Where every interval grew,
    bytes flow all the time and the span starts at ``i``. The end of the read is exact.
    """
    j = i
    while j > 0 and pts[j][1] == pts[j - 1][1]:
        j -= 1
    quantized = any(pts[m][1] == pts[m - 1][1] for m in range(j + 1, len(pts) - 1))
    start = (pts[j - 1][0] + pts[j][0]) / 2 if j > 0 and quantized else pts[i][0]
    end = pts[-1]
    if end[0] - start < 1.0 or end[1] <= pts[i][1]:
        return None
    return (end[1] - pts[i][1]) * 8 / (end[0] - start)


def interval_rates(pts: Sequence[Sample]) -> list[float]:
    """The rate over each interval between consecutive points."""
    return [rate_kbps(a, b) for a, b in itertools.pairwise(pts) if b[0] > a[0]]


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def _q_ks(lam: float) -> float:
    """Kolmogorov's survival function Q(lambda) = 2 sum (-1)^(j-1) exp(-2 j^2 lambda^2)."""
    if lam < 0.2:
        return 1.0  # the series has not begun to converge; the answer is 1 to many digits
    total, sign, previous = 0.0, 2.0, 0.0
    for j in range(1, 101):
        term = sign * math.exp(-2.0 * j * j * lam * lam)
        total += term
        if abs(term) <= 1e-3 * previous or abs(term) <= 1e-8 * total:
            return min(max(total, 0.0), 1.0)
        sign, previous = -sign, abs(term)
    return 1.0


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sample KS: (D, asymptotic p-value). Empty samples give (0, 1)."""
    if not a or not b:
        return 0.0, 1.0
    xs, ys = sorted(a), sorted(b)
    n, m = len(xs), len(ys)
    i = j = 0
    d = 0.0
    while i < n and j < m:
        x = min(xs[i], ys[j])
        while i < n and xs[i] <= x:  # step over ties in both samples together
            i += 1
        while j < m and ys[j] <= x:
            j += 1
        d = max(d, abs(i / n - j / m))
    en = math.sqrt(n * m / (n + m))
    return d, _q_ks((en + 0.12 + 0.11 / en) * d)


def effect(slow: Sequence[float], fast: Sequence[float]) -> float:
    """How far the slow sample's median falls below the fast one's, as a share of the faster."""
    ms, mf = median(slow), median(fast)
    if ms is None or mf is None or mf <= 0:
        return 0.0
    return (mf - ms) / mf


@dataclass(frozen=True, slots=True)
class ChangePoint:
    """Where a transfer's rate fell and stayed down."""

    index: int  # into points(): the sample at the change
    at_ms: float
    at_bytes: int
    before_kbps: float
    after_kbps: float


def change_point(pts: Sequence[Sample]) -> ChangePoint | None:
    """Where the rate fell and stayed down within one transfer, or None.

    A split at point k qualifies when the rate from the origin to k is at least CHANGE_FACTOR
    times both the rate from k to the end and the rate over the last half of that stretch
    (so a rate that recovers is not a change), k comes after CHANGE_MIN_BYTES, and at least
    CHANGE_MIN_AFTER intervals follow. Of those, the split that lies furthest above the chord
    from the first point to the last wins: the knee of the cumulative curve, where the fast
    part ended. Before the knee the curve climbs faster than the chord, after it slower, so a
    sample taken while the fast part was still arriving (or during a stall within it, as on a
    loaded machine) lies below the knee. A least-squares fit of two segments was tried first
    and split inside such a stall, leaving the fast part's last bytes in the slow rate.
    """
    best: ChangePoint | None = None
    best_height = -math.inf
    last = len(pts) - 1
    (t0, b0), (t1, b1) = pts[0], pts[last]
    slope = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
    for k in range(1, last - CHANGE_MIN_AFTER + 1):
        if pts[k][1] < CHANGE_MIN_BYTES:
            continue
        before = rate_kbps(pts[0], pts[k])
        # From the next sample on: the interval just after the fall may still hold the end of
        # a TLS record that arrived at the fast rate, which would overstate the slow one.
        after = rate_kbps(pts[k + 1], pts[last])
        tail = rate_kbps(pts[(k + last) // 2], pts[last])
        # Nothing arriving after k is a stall at the end of the read (the next record still on
        # its way when the time ran out), not a rate: it read as a fall to 0 kbit/s.
        if before <= 0 or after <= 0 or before < CHANGE_FACTOR * max(after, tail):
            continue
        height = pts[k][1] - b0 - slope * (pts[k][0] - t0)
        if height > best_height:
            best, best_height = ChangePoint(k, pts[k][0], pts[k][1], before, after), height
    if best is not None:
        # The rate reported is read from the arrival before, as a steady one is.
        exact = rate_from(pts, best.index + 1)
        if exact is not None:
            best = ChangePoint(best.index, best.at_ms, best.at_bytes, best.before_kbps, exact)
    return best


def stability(pts: Sequence[Sample], start: int = 0) -> float | None:
    """Coefficient of variation of the rate over windows between arrival points.

    Counted from ``start`` (a change point, say) and after slow start: the first second, or
    the first quarter of a transfer too short to spare a second. Bytes become readable in
    quanta (a TLS record only when whole: 16 KiB is a second's worth at 128 kbit/s), so a
    window cut at arbitrary samples holds zero, one or two records by chance, and a flat
    policer read as unsteady. A window here runs from one arrival point (a sample whose count
    grew) to the first arrival at least STABILITY_WINDOW intervals later: it holds exactly the
    bytes that became readable within it, timed to within a sample interval at each end.
    Where every sample grows (a fast transfer, small records) these are plain windows of
    STABILITY_WINDOW intervals. None when fewer than three windows remain, or nothing moved.
    """
    pts = list(pts[start:])
    if len(pts) < 2:
        return None
    skip = min(STABILITY_SKIP_MS, (pts[-1][0] - pts[0][0]) / 4)
    first = next(i for i, p in enumerate(pts) if p[0] >= pts[0][0] + skip)
    arrivals = [i for i in range(max(first, 1), len(pts)) if pts[i][1] > pts[i - 1][1]]
    # Spans counted in samples, not ms, so a sampler running a little late does not stretch a
    # window. Samples after the last arrival are left out: when their bytes arrive is unknown.
    windows: list[float] = []
    begin = arrivals[0] if arrivals else 0
    for i in arrivals:
        if i - begin >= STABILITY_WINDOW:
            windows.append(rate_kbps(pts[begin], pts[i]))
            begin = i
    if len(windows) < 3:
        return None
    mean = statistics.fmean(windows)
    return statistics.pstdev(windows) / mean if mean > 0 else None
