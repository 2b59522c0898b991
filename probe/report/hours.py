"""Whether a verdict concentrates in a few hours of the UTC day (pure; no database).

Kazakhstan throttled every evening for months in 2018: such a pattern must jump out of a
report. The rule, for one verdict's 24 hourly counts against all results' 24 counts:

1. Too few results prove nothing: fewer than MIN_RESULTS, no finding.
2. Of the windows of consecutive hours (wrapping past midnight) at most MAX_HOURS wide that
   hold at least SHARE of the verdict's results, the one whose share of the verdict most
   exceeds its share of all results (a one-sided KS distance: a 6-hour evening throttle
   gives 18:00-24:00, not the 5 hours that already hold 83% of it).
3. Only if that window's share of the verdict is at least LIFT times its share of all the
   results: a probe that measures only in the evening sees evening blocking, and that proves
   nothing about the hour.
4. Only if so many results in that window would be unlikely by chance: the binomial tail
   P(X >= held | n, the window's share of all results) below ALPHA (a few sweeps in a short
   episode land in a few hours by chance; a month of evenings does not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from probe.report.model import HOURS, Concentration

MIN_RESULTS = 10
SHARE = 0.75
MAX_HOURS = 12
LIFT = 2.0  # the window's share of the verdict over its share of all results
ALPHA = 1e-6  # small: 24 x 12 windows are tried, and a false "every evening" misleads


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if p >= 1.0:
        return 1.0
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def _held(counts: Sequence[int], start: int, width: int) -> int:
    return sum(counts[(start + i) % HOURS] for i in range(width))


def find_concentration(
    verdict: str, counts: Sequence[int], totals: Sequence[int]
) -> Concentration | None:
    """The window of hours in which ``verdict`` concentrates, or None (see the module rule)."""
    if len(counts) != HOURS or len(totals) != HOURS:
        raise ValueError(f"expected {HOURS} hourly counts, got {len(counts)} and {len(totals)}")
    n, all_results = sum(counts), sum(totals)
    if n < MIN_RESULTS or all_results == 0:
        return None
    best: Concentration | None = None
    for width in range(1, MAX_HOURS + 1):
        for start in range(HOURS):
            share = _held(counts, start, width) / n
            if share < SHARE:
                continue
            measured = _held(totals, start, width) / all_results
            if share < LIFT * measured:
                continue
            if binomial_tail(_held(counts, start, width), n, measured) >= ALPHA:
                continue
            if best is None or share - measured > best.share - best.measurement_share:
                best = Concentration(verdict, start, width, share, measured)
    return best
