"""Throttling (rule 7, docs/architecture.md): the target's rate against two controls.

The controls come from the same sweep, interleaved with the target's trials so one cannot
taint the other: the same address and resource asked for with an innocuous SNI (so a censor
that matches the SNI lets it pass), and a reference host (so a slow link shows as slow
everywhere). How one transfer's rate is read, and when one kind of transfer is "slower"
than another, is probe.classify.trials.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from probe.classify.common import verdict
from probe.classify.evidence import Controls, InputEvidence, PastRate
from probe.classify.rates import median
from probe.classify.trials import (
    MIN_TRIALS,
    RATIO,
    Comparison,
    Trials,
    analyse,
    compare,
    rounded,
)
from probe.classify.verdict import Verdict

MIN_HISTORY = 2  # earlier unthrottled tests at this vantage that make the address's history
FLAT_CV = 0.25  # at or below: a flat rate, as a policer or shaper gives


def classify_throughput(base: Verdict, ev: InputEvidence, ctl: Controls) -> Verdict:
    """The verdict once the trials are in: ``base`` (accessible) unless rule 7 finds a throttle."""
    j = _judge(base, ev, ctl)
    for step in _STEPS:
        found = step(j)
        if found is not None:
            return found
    return _ambiguous(j)


@dataclass(frozen=True, slots=True)
class _Judged:
    """The trials of each kind, how they compare, and the facts every step of rule 7 records."""

    base: Verdict
    transfers: int  # the target's throughput transfers, usable or not
    target: Trials
    innocuous: Trials
    reference: Trials
    helper: Trials
    vs_reference: Comparison | None
    vs_innocuous: Comparison | None
    innocuous_vs_reference: Comparison | None
    vs_helper: Comparison | None
    facts: dict[str, Any]

    @property
    def said(self) -> str:
        return f"Throughput {_kbit(self.target.median)}"

    def not_throttled(self, rule: str, why: str, baseline: float | None) -> Verdict:
        """``base`` with ``why`` added to its reason and the throughput facts to its evidence."""
        base = self.base
        return Verdict(
            base.verdict, base.layer, base.detail, rule, f"{base.reason} {why}",
            {**base.evidence, "throughput": self.facts}, rounded(self.target.median),
            rounded(baseline), self.facts["address"],
        )  # fmt: skip

    def throttled(self, detail: str, layer: str, baseline: float | None, reason: str) -> Verdict:
        return _throttled(detail, layer, self.facts, self.target.median, baseline, reason)


def _judge(base: Verdict, ev: InputEvidence, ctl: Controls) -> _Judged:
    """Each kind of trial analysed, the target compared with each control, the facts."""
    target = analyse("target", ev.throughput)
    innocuous = analyse("innocuous", ctl.throughput_innocuous)
    reference = analyse("reference", ctl.throughput_reference)
    vs_reference = compare(target, reference)
    vs_innocuous = compare(target, innocuous)
    innocuous_vs_reference = compare(innocuous, reference)
    helper = analyse("helper", ctl.throughput_helper)
    vs_helper = compare(target, helper)
    address = ev.throughput[0].ip if ev.throughput else None
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
        "address": address,
        "history": _history(ctl.throughput_history, target.median, address),
        **_shape(target),
    }
    return _Judged(
        base, len(ev.throughput), target, innocuous, reference, helper,
        vs_reference, vs_innocuous, innocuous_vs_reference, vs_helper, facts,
    )  # fmt: skip


def _too_few(j: _Judged) -> Verdict | None:
    """Too few of the target's transfers delivered a body to judge its rate."""
    if len(j.target.rates) >= MIN_TRIALS:
        return None
    return j.not_throttled(
        "throughput.incomplete",
        f"Only {len(j.target.rates)} of {j.transfers} throughput transfers of the "
        "target delivered a body: too few to judge its rate.",
        j.innocuous.median or j.reference.median,
    )


def _no_reference(j: _Judged) -> Verdict | None:
    """No reference host to rule out a slow link."""
    if j.vs_reference is not None:
        return None
    return j.not_throttled(
        "throughput.no_reference",
        f"{j.said}; no reference host gave {MIN_TRIALS} usable transfers, so a slow link "
        "cannot be ruled out.",
        j.innocuous.median,
    )


def _not_slower(j: _Judged) -> Verdict | None:
    """The target is not slower than the references: a slow link slows both."""
    if j.vs_reference is None or j.vs_reference.slower:
        return None
    return j.not_throttled(
        "throughput.not_slower",
        f"{j.said}, not markedly slower than the reference hosts' {_kbit(j.reference.median)} "
        "(a slow link slows both): not throttled.",
        j.innocuous.median or j.reference.median,
    )


def _no_innocuous(j: _Judged) -> Verdict | None:
    """Slower than the references, but no innocuous SNI to tell a throttle from a slow server."""
    if j.vs_innocuous is not None:
        return None
    return j.not_throttled(
        "throughput.no_innocuous",
        f"{j.said}, far below the references' {_kbit(j.reference.median)}, but the same "
        "address with an innocuous SNI gave too few usable transfers to tell a throttle "
        "from a slow server.",
        j.reference.median,
    )


def _sni_throttle(j: _Judged) -> Verdict | None:
    """Slower than the references and than the innocuous SNI on the same address."""
    if j.vs_innocuous is None or not j.vs_innocuous.slower:
        return None
    return j.throttled(
        "throttle.sni", "tls", j.innocuous.median,
        f"{j.said}{_where(j.facts)}, at most 1/{RATIO:g} of what the same address gave an "
        f"innocuous SNI ({_kbit(j.innocuous.median)}) and the reference hosts "
        f"({_kbit(j.reference.median)}) in interleaved trials.",
    )  # fmt: skip


def _slow_address(j: _Judged) -> Verdict | None:
    """Every connection to the address is slow: throttled if shown fast elsewhere or before."""
    if j.innocuous_vs_reference is None or not j.innocuous_vs_reference.slower:
        return None
    slow_here = (
        f"{j.said}{_where(j.facts)}; the same address is as slow with an innocuous SNI "
        f"({_kbit(j.innocuous.median)}) while the reference hosts gave "
        f"{_kbit(j.reference.median)}: every connection to the address is slow from here"
    )
    history = j.facts["history"]
    if j.vs_helper is not None and j.vs_helper.slower:
        why = f"and the control helper got {_kbit(j.helper.median)} from it meanwhile."
    elif j.vs_helper is not None:
        return j.not_throttled(
            "throughput.slow_everywhere",
            f"{slow_here}, but the control helper got it as slow "
            f"({_kbit(j.helper.median)}): the server is slow for everyone, not throttled.",
            j.helper.median,
        )
    elif history["fast_before"]:
        why = (
            f"and it gave {_kbit(history['median_kbps'])} here in {history['unthrottled']} "
            "earlier tests."
        )
    else:
        return j.not_throttled(
            "throughput.slow_address",
            f"{slow_here}, but no control shows it fast elsewhere (the control helper) "
            "or before (this vantage's history): a server slow for everyone cannot be "
            "ruled out, so no throttle is claimed.",
            j.reference.median,
        )
    return j.throttled("throttle.ip", "tcp", j.reference.median, f"{slow_here}, {why}")


def _ambiguous(j: _Judged) -> Verdict:
    """The innocuous SNI is neither as slow as the target nor markedly faster."""
    return j.not_throttled(
        "throughput.ambiguous",
        f"{j.said}, far below the references' {_kbit(j.reference.median)}, but the innocuous "
        f"SNI on the same address ({_kbit(j.innocuous.median)}) is neither as slow nor "
        "markedly faster: no throttle is claimed.",
        j.innocuous.median,
    )


# Tried in this order (the decision in the module docstring); each step assumes that none
# before it decided.
_STEPS: tuple[Callable[[_Judged], Verdict | None], ...] = (
    _too_few,
    _no_reference,
    _not_slower,
    _no_innocuous,
    _sni_throttle,
    _slow_address,
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
        v.verdict, v.layer, v.detail, v.rule, v.reason, v.evidence, rounded(rate),
        rounded(baseline), facts["address"],
    )  # fmt: skip


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
        "median_kbps": rounded(then),
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
        "stability_cv": rounded(cv, 3),
        "flat": None if cv is None else cv <= FLAT_CV,
    }


def _where(facts: dict[str, Any]) -> str:
    at = facts["change_at_bytes"]
    return f" after the first {at} bytes" if at else ""


def _kbit(kbps: float | None) -> str:
    return "unknown" if kbps is None else f"{kbps:.0f} kbit/s"
