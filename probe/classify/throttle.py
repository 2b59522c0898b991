"""Throttling (DESIGN rule 7): the target's rate against two controls measured with it.

The controls come from the same sweep, interleaved with the target's trials so one cannot
taint the other: the same address and resource asked for with an innocuous SNI (so a censor
that matches the SNI lets it pass), and a reference host (so a slow link shows as slow
everywhere). One transfer's goodput is its body bytes over the time from the response
headers to the end of the read; when the rate fell within the transfer (a throttle triggered
after the first N bytes, see rates.change_point), the rate after the fall counts instead.

"Slower" between two kinds of trial needs all of (the best-known differentiation detector's
test, with the ratio DESIGN asks for on top):
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

The decision, for an input that was otherwise accessible:
  - target not slower than the references: not throttled (a slow link slows the references
    too);
  - slower than the references and than the innocuous SNI on the same address:
    ``throttled`` ``throttle.sni``;
  - slower than the references, the innocuous SNI as slow as the target and itself slower
    than the references: every connection to the address is slow from here. That is
    ``throttled`` ``throttle.ip`` only when a control shows the address fast elsewhere or
    before (rule 1: the probe's own slowness is never enough, and a server that is slow for
    everyone, or limits each connection, looks the same from here):
      - the control helper timed the same resource at the same address on its uncensored
        line: the target "slower" than the helper's transfers (the same test as above) is
        throttled; otherwise the server is slow for everyone: not throttled
        (``throughput.slow_everywhere``);
      - without the helper's transfers, this vantage's history: at least MIN_HISTORY earlier
        tests of the input that were not throttled, their median rate at least RATIO times
        today's: throttled;
      - neither: not throttled (``throughput.slow_address``), and the reason says so;
  - anything else (too few transfers, a control missing or in between): not throttled, and
    the reason says which.

Layers: a throttle keyed on the SNI is triggered at the TLS layer (the censor reads the
ClientHello), like ``tls.reset``, so ``throttle.sni`` is layer "tls"; a throttle on every
connection to an address is where ``tcp.*`` blocking is (per address, below any name), so
``throttle.ip`` is layer "tcp". Layer means where the censor's trigger was seen, the same for
every verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from measurements.observations import ThroughputObservation
from probe.classify.common import verdict
from probe.classify.rates import (
    ChangePoint,
    change_point,
    effect,
    interval_rates,
    ks_2samp,
    median,
    points,
    rate_kbps,
    stability,
)
from probe.evidence import Controls, InputEvidence, PastRate
from probe.verdict import Verdict

MIN_TRIALS = 3
MIN_HISTORY = 2  # earlier unthrottled tests at this vantage that make the address's history
RATIO = 4.0
MAX_P = 0.01
MIN_EFFECT = 0.5
FLAT_CV = 0.25  # at or below: a flat rate, as a policer or shaper gives
RTT_FLOOR_MS = 10.0  # round trips shorter than this do not limit a transfer worth timing


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
            "kbps": [_r(x) for x in self.rates],
            "median_kbps": _r(self.median),
            "unusable": self.unusable,
            "change_at_bytes": [c.at_bytes if c else None for c in self.changes],
            "cv": [_r(c, 3) for c in self.cvs],
            "rtt_ms": _r(self.rtt_ms, 2),
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
    """The rate from the first sample that saw body bytes to the last one.

    What arrived before the first sample came with the response headers (a first TLS record,
    the first TCP window) in no measurable time; counting it overstates a slow transfer's
    rate (by ~9% for 128 KiB at 128 kbit/s in the lab). A transfer too short to have two
    such samples keeps its plain goodput.
    """
    first = next((p for p in pts if p[1] > 0), None)
    last = pts[-1]
    if first is None or last[0] - first[0] < 1.0 or last[1] <= first[1]:
        return goodput or 0.0
    return rate_kbps(first, last)


def analyse(kind: str, observations: Sequence[ThroughputObservation]) -> Trials:
    """Rates, interval rates, change points and stability of one kind's transfers."""
    rates: list[float] = []
    pooled: list[float] = []
    changes: list[ChangePoint | None] = []
    cvs: list[float | None] = []
    used = [o for o in observations if _usable(o)]
    for obs in used:
        assert obs.first_byte_ms is not None
        pts = points(obs.samples, obs.first_byte_ms)
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
            "ratio": _r(self.ratio, 4),
            "every_trial": self.every_trial,
            "ks_d": _r(self.ks_d, 3),
            "ks_p": float(f"{self.ks_p:.3g}"),
            "effect": _r(self.effect, 3),
            "rtt_scale": _r(self.rtt_scale, 3),
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


def classify_throughput(base: Verdict, ev: InputEvidence, ctl: Controls) -> Verdict:
    """The verdict once the trials are in: ``base`` (accessible) unless rule 7 finds a throttle."""
    target = analyse("target", ev.throughput)
    innocuous = analyse("innocuous", ctl.throughput_innocuous)
    reference = analyse("reference", ctl.throughput_reference)
    vs_reference = compare(target, reference)
    vs_innocuous = compare(target, innocuous)
    innocuous_vs_reference = compare(innocuous, reference)
    helper = analyse("helper", ctl.throughput_helper)
    vs_helper = compare(target, helper)
    facts: dict[str, Any] = {
        "target": target.facts(),
        "innocuous": innocuous.facts(),
        "reference": reference.facts(),
        "vs_reference": vs_reference.facts() if vs_reference else None,
        "vs_innocuous": vs_innocuous.facts() if vs_innocuous else None,
        "innocuous_vs_reference": (
            innocuous_vs_reference.facts() if innocuous_vs_reference else None
        ),
        "innocuous_certificate_checked": False,
        "helper": helper.facts() if ctl.throughput_helper else None,
        "vs_helper": vs_helper.facts() if vs_helper else None,
        "address": ev.throughput[0].ip if ev.throughput else None,
        "history": _history(
            ctl.throughput_history, target.median, ev.throughput[0].ip if ev.throughput else None
        ),
        **_shape(target),
    }
    rate = target.median
    said = f"Throughput {_kbit(rate)}"

    def not_throttled(rule: str, why: str, baseline: float | None) -> Verdict:
        return Verdict(
            base.verdict, base.layer, base.detail, rule, f"{base.reason} {why}",
            {**base.evidence, "throughput": facts}, _r(rate), _r(baseline),
        )  # fmt: skip

    if len(target.rates) < MIN_TRIALS:
        return not_throttled(
            "throughput.incomplete",
            f"Only {len(target.rates)} of {len(ev.throughput)} throughput transfers of the "
            "target delivered a body: too few to judge its rate.",
            innocuous.median or reference.median,
        )
    if vs_reference is None:
        return not_throttled(
            "throughput.no_reference",
            f"{said}; no reference host gave {MIN_TRIALS} usable transfers, so a slow link "
            "cannot be ruled out.",
            innocuous.median,
        )
    if not vs_reference.slower:
        return not_throttled(
            "throughput.not_slower",
            f"{said}, not markedly slower than the reference hosts' {_kbit(reference.median)} "
            "(a slow link slows both): not throttled.",
            innocuous.median or reference.median,
        )
    if vs_innocuous is None:
        return not_throttled(
            "throughput.no_innocuous",
            f"{said}, far below the references' {_kbit(reference.median)}, but the same "
            "address with an innocuous SNI gave too few usable transfers to tell a throttle "
            "from a slow server.",
            reference.median,
        )
    where = _where(facts)
    if vs_innocuous.slower:
        return _throttled(
            "throttle.sni", "tls", facts, rate, innocuous.median,
            f"{said}{where}, at most 1/{RATIO:g} of what the same address gave an innocuous "
            f"SNI ({_kbit(innocuous.median)}) and the reference hosts "
            f"({_kbit(reference.median)}) in interleaved trials.",
        )  # fmt: skip
    if innocuous_vs_reference is not None and innocuous_vs_reference.slower:
        slow_here = (
            f"{said}{where}; the same address is as slow with an innocuous SNI "
            f"({_kbit(innocuous.median)}) while the reference hosts gave "
            f"{_kbit(reference.median)}: every connection to the address is slow from here"
        )
        history = facts["history"]
        if vs_helper is not None and vs_helper.slower:
            why = f"and the control helper got {_kbit(helper.median)} from it meanwhile."
        elif vs_helper is not None:
            return not_throttled(
                "throughput.slow_everywhere",
                f"{slow_here}, but the control helper got it as slow "
                f"({_kbit(helper.median)}): the server is slow for everyone, not throttled.",
                helper.median,
            )
        elif history["fast_before"]:
            why = (
                f"and it gave {_kbit(history['median_kbps'])} here in {history['unthrottled']} "
                "earlier tests."
            )
        else:
            return not_throttled(
                "throughput.slow_address",
                f"{slow_here}, but no control shows it fast elsewhere (the control helper) "
                "or before (this vantage's history): a server slow for everyone cannot be "
                "ruled out, so no throttle is claimed.",
                reference.median,
            )
        return _throttled(
            "throttle.ip", "tcp", facts, rate, reference.median, f"{slow_here}, {why}"
        )
    return not_throttled(
        "throughput.ambiguous",
        f"{said}, far below the references' {_kbit(reference.median)}, but the innocuous "
        f"SNI on the same address ({_kbit(innocuous.median)}) is neither as slow nor "
        "markedly faster: no throttle is claimed.",
        innocuous.median,
    )


def _throttled(
    detail: str,
    layer: str,
    facts: dict[str, Any],
    rate: float | None,
    baseline: float | None,
    reason: str,
) -> Verdict:
    v = verdict("throttled", layer, detail, detail, reason, throughput=facts)
    return Verdict(
        v.verdict, v.layer, v.detail, v.rule, v.reason, v.evidence, _r(rate), _r(baseline)
    )


def _history(past: Sequence[PastRate], now: float | None, address: str | None) -> dict[str, Any]:
    """This vantage's earlier tests of the input, and whether they show it fast before.

    Only tests of the same address count (the claim is about the address), and only those
    that were not themselves throttled: a throttle in place for weeks must not become its own
    baseline.
    """
    past = [p for p in past if address is not None and p.address == address]
    unthrottled = [p.kbps for p in past if p.verdict != "throttled"]
    then = median(unthrottled)
    return {
        "tests": len(past),
        "unthrottled": len(unthrottled),
        "median_kbps": _r(then),
        "since": min((p.measured_at for p in past), default=None),
        "fast_before": (
            len(unthrottled) >= MIN_HISTORY
            and then is not None
            and now is not None
            and then >= RATIO * now
        ),
    }


def _shape(target: Trials) -> dict[str, Any]:
    """The target's rate over time: where it fell, if it did repeatably, and how flat it ran."""
    found = [c.at_bytes for c in target.changes if c is not None]
    # A change seen in most transfers is a trigger; one seen once is a hiccup.
    repeatable = len(found) * 2 > len(target.changes)
    cvs = [c for c in target.cvs if c is not None]
    cv = median(cvs)
    return {
        "change_at_bytes": int(median(found) or 0) if repeatable else None,
        "stability_cv": _r(cv, 3),
        "flat": None if cv is None else cv <= FLAT_CV,
    }


def _where(facts: dict[str, Any]) -> str:
    at = facts["change_at_bytes"]
    return f" after the first {at} bytes" if at else ""


def _kbit(kbps: float | None) -> str:
    return "unknown" if kbps is None else f"{kbps:.0f} kbit/s"


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
