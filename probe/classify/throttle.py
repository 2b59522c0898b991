"""Throttling (docs/architecture.md, rule 7): the target's rate against two controls beside it.

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

from collections.abc import Sequence
from typing import Any

from probe.classify.common import verdict
from probe.classify.evidence import Controls, InputEvidence, PastRate
from probe.classify.rates import median
from probe.classify.trials import MIN_TRIALS, RATIO, Trials, analyse, compare, rounded
from probe.classify.verdict import Verdict

MIN_HISTORY = 2  # earlier unthrottled tests at this vantage that make the address's history
FLAT_CV = 0.25  # at or below: a flat rate, as a policer or shaper gives


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
    rate = target.median
    said = f"Throughput {_kbit(rate)}"

    def not_throttled(rule: str, why: str, baseline: float | None) -> Verdict:
        return Verdict(
            base.verdict, base.layer, base.detail, rule, f"{base.reason} {why}",
            {**base.evidence, "throughput": facts}, rounded(rate), rounded(baseline), address,
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
