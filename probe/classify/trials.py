"""The transfers of one kind (target, innocuous, reference, helper) analysed, and compared.

One transfer's rate is its body's goodput from the first sample that saw body bytes to the
end of the read; when the rate fell within the transfer (a throttle triggered after the
first N bytes, see rates.change_point), the rate after the fall counts instead.

"Slower" between two kinds of trial needs all of (the best-known differentiation detector's
test, with the ratio rule 7 of docs/architecture.md asks for on top):
  - at least MIN_TRIALS usable transfers of each;
  - the median rate of the slow kind at most 1/RATIO of the fast kind's, and every slow
    trial at most 1/RATIO of that median too (repeatably, not on average);
  - a two-sample KS test on the per-interval rates of all their transfers, p < MAX_P;
  - an effect of at least MIN_EFFECT: the medians of those rates differ by half the faster.
Before these, the fast kind's rates are scaled down by the ratio of round trips (the
shortest TCP connect of each kind, floored at RTT_FLOOR_MS) when the slow kind's path is
longer: a short transfer from a server across the world is slower than one from a nearby
reference by that much with no censor in between (TCP's window opens once per round trip),
and must not read as a throttle. It only ever makes "slower" harder to reach. The same
address shares one path, so the innocuous-SNI comparison is left as it is, in effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from measurements.observations import HTTPHop, ThroughputObservation
from probe.classify.rates import (
    ChangePoint,
    change_point,
    effect,
    interval_rates,
    ks_2samp,
    median,
    points,
    rate_from,
    stability,
)

MIN_TRIALS = 3
RATIO = 4.0
MAX_P = 0.01
MIN_EFFECT = 0.5
RTT_FLOOR_MS = 10.0  # round trips shorter than this do not limit a transfer worth timing
# Sample intervals after the first that saw body bytes, below which a transfer was too quick
# to time from that sample on (see _steady_rate); as many as a change point needs after it.
MIN_STEADY_INTERVALS = 4
# How a read ended when its body had all arrived (ThroughputObservation.stopped).
COMPLETE = ("end", "bytes")


@dataclass(frozen=True, slots=True)
class Trials:
    """The usable transfers of one kind (target, innocuous or reference), analysed."""

    kind: str
    rates: tuple[float, ...]  # kbit/s per usable transfer (after a change point, if any)
    interval_rates: tuple[float, ...]  # kbit/s per sample interval, every transfer pooled
    changes: tuple[ChangePoint | None, ...]
    cvs: tuple[float | None, ...]
    unusable: int  # transfers that failed early, or got no 2xx body
    # The shortest TCP connect of the usable transfers: the path's round trip without the
    # queue a throttled transfer may have left behind it.
    rtt_ms: float | None = None

    @property
    def median(self) -> float | None:
        """The median rate of the usable transfers."""
        return median(self.rates)

    def facts(self) -> dict[str, Any]:
        """What a reader needs to re-check this kind's part."""
        return {
            "kbps": [rounded(x) for x in self.rates],
            "median_kbps": rounded(self.median),
            "unusable": self.unusable,
            "change_at_bytes": [c.at_bytes if c else None for c in self.changes],
            "cv": [rounded(c, 3) for c in self.cvs],
            "rtt_ms": rounded(self.rtt_ms, 2),
        }


def _usable(obs: ThroughputObservation) -> bool:
    """A transfer that delivered a 2xx body (a reset midway still timed what came before)."""
    return (
        obs.status is not None
        and 200 <= obs.status < 300
        and obs.bytes > 0
        and obs.first_byte_ms is not None
        and (obs.failure is None or obs.operation == "http_body")
    )


def _steady_rate(pts: Sequence[tuple[float, int]], goodput: float | None) -> float:
    """The rate of what arrived after the first sample that saw body bytes (rates.rate_from).

    What that sample saw came with the response headers (a first TLS record, the first TCP
    window) in no measurable time; counting it overstates a slow transfer's rate (by ~9% for
    128 KiB at 128 kbit/s in the lab). A transfer over within MIN_STEADY_INTERVALS samples of
    that one was too quick for the sampler: most of it had arrived by the first sample, which
    then took measurable time, and the few bytes after it (one late record, say) tell nothing
    (300 KB in 49 ms on loopback read as 6 Mbit/s, not 49). It keeps its goodput, as does a
    transfer with nothing after the first sample.
    """
    first = next((i for i, p in enumerate(pts) if p[1] > 0), None)
    if first is None or len(pts) - 1 - first < MIN_STEADY_INTERVALS:
        return goodput or 0.0
    rate = rate_from(pts, first)
    return rate if rate is not None else goodput or 0.0


def analyse(kind: str, observations: Sequence[ThroughputObservation]) -> Trials:
    """Rates, interval rates, change points and stability of one kind's transfers."""
    rates: list[float] = []
    pooled: list[float] = []
    changes: list[ChangePoint | None] = []
    cvs: list[float | None] = []
    used = [o for o in observations if _usable(o)]
    for obs in used:
        assert obs.first_byte_ms is not None
        pts = points(obs.samples, obs.first_byte_ms, complete=obs.stopped in COMPLETE)
        change = change_point(pts)
        start = change.index if change else 0
        rates.append(change.after_kbps if change else _steady_rate(pts, obs.goodput_kbps))
        pooled.extend(interval_rates(pts[start:]))
        changes.append(change)
        cvs.append(stability(pts, start))
    rtts = [o.connect_ms for o in used if o.connect_ms is not None]
    return Trials(
        kind, tuple(rates), tuple(pooled), tuple(changes), tuple(cvs),
        len(observations) - len(used), min(rtts, default=None),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Comparison:
    """Whether one kind of transfer was markedly slower than another, and by what measures."""

    ratio: float  # median rate of the slow kind over the fast kind's (scaled)
    every_trial: bool  # every slow transfer at most 1/RATIO of the fast kind's median
    ks_d: float
    ks_p: float
    effect: float
    rtt_scale: float = 1.0  # what the fast kind's rates were multiplied by (round trips)

    @property
    def slower(self) -> bool:
        """All four conditions of "slower" hold."""
        return (
            self.ratio <= 1 / RATIO
            and self.every_trial
            and self.ks_p < MAX_P
            and self.effect >= MIN_EFFECT
        )

    def facts(self) -> dict[str, Any]:
        """The measures, rounded for a reader."""
        return {
            "ratio": rounded(self.ratio, 4),
            "every_trial": self.every_trial,
            "ks_d": rounded(self.ks_d, 3),
            "ks_p": float(f"{self.ks_p:.3g}"),
            "effect": rounded(self.effect, 3),
            "rtt_scale": rounded(self.rtt_scale, 3),
            "slower": self.slower,
        }


def compare(slow: Trials, fast: Trials) -> Comparison | None:
    """How ``slow`` compares with ``fast``; None when either has too few usable transfers."""
    if len(slow.rates) < MIN_TRIALS or len(fast.rates) < MIN_TRIALS:
        return None
    scale = rtt_scale(slow.rtt_ms, fast.rtt_ms)
    slow_median, fast_median = slow.median, fast.median
    assert slow_median is not None and fast_median is not None
    fast_median *= scale
    if fast_median <= 0:
        return Comparison(1.0, False, 0.0, 1.0, 0.0, scale)
    fast_intervals = [r * scale for r in fast.interval_rates]
    d, p = ks_2samp(slow.interval_rates, fast_intervals)
    return Comparison(
        ratio=slow_median / fast_median,
        every_trial=all(r <= fast_median / RATIO for r in slow.rates),
        ks_d=d,
        ks_p=p,
        effect=effect(slow.interval_rates, fast_intervals),
        rtt_scale=scale,
    )


def rtt_scale(slow_rtt: float | None, fast_rtt: float | None) -> float:
    """How much of a rate difference a longer round trip on the slow side explains (<= 1)."""
    if slow_rtt is None or fast_rtt is None:
        return 1.0
    return min(1.0, max(fast_rtt, RTT_FLOOR_MS) / max(slow_rtt, RTT_FLOOR_MS))


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# A page's body is timed for escalation only when this long: a shorter one arrives in a few
# TLS records and TCP windows, and its "rate" is the path's latency, not its capacity.
PAGE_MIN_BYTES = 64 * 1024


def page_kbps(hop: HTTPHop | None) -> float | None:
    """The rate of a 2xx page's whole body, from its headers to its end; None if too short."""
    if hop is None or hop.failure is not None or hop.status is None or not 200 <= hop.status < 300:
        return None
    t = hop.timings
    if not hop.body_length or hop.body_length < PAGE_MIN_BYTES:
        return None
    if t.first_byte_ms is None or t.total_ms is None or t.total_ms <= t.first_byte_ms:
        return None
    return hop.body_length * 8 / (t.total_ms - t.first_byte_ms)


def far_slower_than_references(page: HTTPHop | None, references: Sequence[HTTPHop]) -> bool:
    """Whether a page came at most 1/RATIO of the fastest reference page of the same run.

    Rule 7's escalation for a page that finished: it earns a timed test of itself (with the
    test's own controls, which decide). Only bodies of PAGE_MIN_BYTES or more are compared.
    """
    mine = page_kbps(page)
    theirs = [r for r in (page_kbps(h) for h in references) if r is not None]
    return mine is not None and bool(theirs) and mine * RATIO <= max(theirs)
