"""Rule 7 by SNI replay: the target's name against an innocuous one, to the same helper.

The probe times transfers to the control helper's replay listener (probe.engine.replay), the
ClientHello naming the input's host or an innocuous name, interleaved, downloads and uploads.
Both kinds cross the same line to the same server at the same time; only the name differs.
So a slow link, a slow helper or a busy route slows both, and "the target's name is markedly
slower" (probe.classify.trials: ratio, every trial, KS, effect) can only be something on the
path that reads the name: ``throttled`` ``throttle.sni`` (layer "tls", where the trigger is
read), the same detail as a throttle found on the service's own address.

Each direction is judged on its own (a policer may slow uploads only). A direction with too
few usable transfers of either kind says nothing; the verdict stays what the page gave, and
the facts say why. The input's own throughput test, when it had one, decided first.

Screening keeps a long list within the byte budgets: every name first gets one transfer each
way, held against an innocuous baseline the sweep timed once (``worth_a_full_test``), and only
a name that ran at most 1/RATIO of it gets the interleaved trials. A screened name's verdict
never changes (``Controls.replay_screened``): one transfer is not a repeatable slow-down, and
a baseline timed earlier is not an interleaved control.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from measurements.observations import ThroughputObservation
from probe.classify.evidence import Controls, InputEvidence
from probe.classify.trials import RATIO, Comparison, Trials, analyse, compare, rounded
from probe.classify.verdict import Verdict

DIRECTIONS = ("down", "up")


def worth_a_full_test(
    screen: Sequence[ThroughputObservation], baseline: Sequence[ThroughputObservation]
) -> tuple[str, ...]:
    """The directions in which a name's screening transfer ran at most 1/RATIO of the baseline.

    A screening transfer that failed is not one: a name reset at the helper too is blocked,
    not slowed, and trials of it would deliver nothing to time.
    """
    slow = []
    for d in DIRECTIONS:
        mine = analyse("screen", [o for o in screen if o.direction == d]).median
        base = analyse("baseline", [o for o in baseline if o.direction == d]).median
        if mine is not None and base is not None and mine * RATIO <= base:
            slow.append(d)
    return tuple(slow)


def classify_replay(base: Verdict, ev: InputEvidence, ctl: Controls) -> Verdict:
    """``base`` (accessible) unless the replay shows the input's name slowed."""
    if ctl.replay_screened:
        return _screened(base, ev, ctl)
    judged = {d: _direction(d, ev.replay, ctl.replay_innocuous) for d in DIRECTIONS}
    facts: dict[str, Any] = {
        "helper_address": next((o.ip for o in ev.replay), None),
        "innocuous_certificate_checked": False,
        **{d: j.facts() for d, j in judged.items()},
    }
    slowed = [j for j in judged.values() if j.comparison is not None and j.comparison.slower]
    if not slowed:
        reason = _not_slowed(judged)
        return Verdict(
            base.verdict, base.layer, base.detail, base.rule, f"{base.reason} {reason}",
            {**base.evidence, "replay": facts}, base.throughput_kbps, base.baseline_kbps,
            base.throughput_address,
        )  # fmt: skip
    worst = slowed[0]  # downloads first: the direction a reader of a page feels
    which = " and ".join(f"{j.direction}loads" for j in slowed)
    reason = (
        f"Replayed to the control helper, transfers naming {ev.hostname} ran at "
        + "; ".join(j.said() for j in slowed)
        + f": {which} at most 1/{RATIO:g} of the same transfers naming an innocuous host, "
        "interleaved on the same line to the same server."
    )
    return Verdict(
        "throttled", "tls", "throttle.sni", "replay.sni", reason,
        {**base.evidence, "replay": facts}, rounded(worst.target.median),
        rounded(worst.innocuous.median), facts["helper_address"],
    )  # fmt: skip


def _screened(base: Verdict, ev: InputEvidence, ctl: Controls) -> Verdict:
    """A name screened and not found slow enough to be worth trials: the page's verdict."""
    facts: dict[str, Any] = {"helper_address": next((o.ip for o in ev.replay), None),
                             "screened": True}  # fmt: skip
    said = []
    for d in DIRECTIONS:
        mine = analyse("screen", [o for o in ev.replay if o.direction == d])
        baseline = analyse("baseline", [o for o in ctl.replay_innocuous if o.direction == d])
        facts[d] = {"screen_kbps": rounded(mine.median), "baseline": baseline.facts()}
        said.append(f"{_kbit(mine.median)} {d} against {_kbit(baseline.median)}")
    reason = (
        f"SNI replay screening: {ev.hostname} gave "
        + ", ".join(said)
        + " naming an innocuous host: not slow enough to need trials."
    )
    return Verdict(
        base.verdict, base.layer, base.detail, base.rule, f"{base.reason} {reason}",
        {**base.evidence, "replay": facts}, base.throughput_kbps, base.baseline_kbps,
        base.throughput_address,
    )  # fmt: skip


class _Judged:
    """One direction's transfers of each kind and how they compare."""

    def __init__(
        self, direction: str, target: Trials, innocuous: Trials, comparison: Comparison | None
    ) -> None:
        self.direction = direction
        self.target, self.innocuous, self.comparison = target, innocuous, comparison

    def said(self) -> str:
        return (
            f"{_kbit(self.target.median)} {self.direction} against {_kbit(self.innocuous.median)}"
        )

    def facts(self) -> dict[str, Any]:
        return {
            "target": self.target.facts(),
            "innocuous": self.innocuous.facts(),
            "vs_innocuous": self.comparison.facts() if self.comparison else None,
        }


def _direction(
    direction: str,
    target: tuple[ThroughputObservation, ...],
    innocuous: tuple[ThroughputObservation, ...],
) -> _Judged:
    mine = analyse("replay", [o for o in target if o.direction == direction])
    theirs = analyse("replay_innocuous", [o for o in innocuous if o.direction == direction])
    return _Judged(direction, mine, theirs, compare(mine, theirs))


def _not_slowed(judged: dict[str, _Judged]) -> str:
    parts = []
    for j in judged.values():
        if j.comparison is None:
            parts.append(f"{j.direction}: too few usable transfers to judge")
        else:
            parts.append(f"{j.direction}: {j.said()}, not markedly slower")
    return "SNI replay to the control helper: " + "; ".join(parts) + "."


def _kbit(kbps: float | None) -> str:
    return "unknown" if kbps is None else f"{kbps:.0f} kbit/s"
