"""Redirect hops: an input whose chain failed at a later hop takes that hop's own verdict.

A chain that fails at a hop after the first (a link shortener, http to https, www to bare)
cannot be judged by the input's own rules: every control was asked about the input's name
and address, not the hop's. So the engine measures such a hop as an input of its own
(``probe.engine.planner.later_hop``) and this module joins the verdicts, by these rules:

- the input's own *blocked* stays: a hop never turns it into something else;
- a verdict that did not come from a failure at a later hop stays;
- a hop found accessible (or throttled) on its own, though it failed inside the chain,
  leaves the chain's verdict (its own measurement could not show what the chain met);
- otherwise the input's verdict becomes the hop's (blocked, or inconclusive with its
  reason), and its evidence names the hop: its number, its URL, the chain up to it.

Hops come in chain order, each found in the chain of the one before it, so the deepest is
judged first and each hop may take the verdict of the one after it. The evidence keeps every
hop's own verdict and controls (``later_hops``), so a reader can re-check each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from measurements.observations import to_jsonable
from probe.classify.evidence import Controls, HopEvidence, InputEvidence
from probe.classify.http import failed_later
from probe.classify.verdict import Verdict

Judge = Callable[[InputEvidence, Controls], Verdict]

# A hop that shows these on its own does not explain why the chain failed there.
_REACHED = ("accessible", "throttled")


def through_hops(own: Verdict, ev: InputEvidence, judge: Judge) -> Verdict:
    """The input's verdict once its later hops are judged (``own`` when it has none)."""
    if not ev.hops:
        return own
    judged = [judge(hop.evidence, hop.controls) for hop in ev.hops]
    carried: Verdict | None = None  # the deepest hops' verdict, handed back one hop at a time
    for hop, verdict in reversed(list(zip(ev.hops, judged, strict=True))):
        carried = _take(_named(verdict, hop), hop.evidence, carried)
    result = _take(own, ev, carried)
    if result is not own:
        result = _with(result, chain_verdict=_summary(own))
    facts = [_hop_facts(h, v) for h, v in zip(ev.hops, judged, strict=True)]
    return _with(result, later_hops=facts)


def _take(verdict: Verdict, ev: InputEvidence, later: Verdict | None) -> Verdict:
    """``later`` (a hop's verdict) in place of ``verdict`` where the rules above allow it."""
    if later is None or verdict.verdict == "blocked" or later.verdict in _REACHED:
        return verdict
    return later if failed_later(ev) is not None else verdict


def _named(verdict: Verdict, hop: HopEvidence) -> Verdict:
    """A hop's verdict as the input's: its reason and evidence say which hop it is."""
    return dataclasses.replace(
        verdict,
        reason=f"At hop {hop.number} {hop.url}: {verdict.reason}",
        evidence={
            **verdict.evidence, "hop": hop.number, "hop_url": hop.url, "chain": list(hop.chain),
        },
    )  # fmt: skip


def _with(verdict: Verdict, **facts: Any) -> Verdict:
    return dataclasses.replace(verdict, evidence={**verdict.evidence, **facts})


def _summary(verdict: Verdict) -> dict[str, Any]:
    return {
        "verdict": verdict.verdict,
        "layer": verdict.layer,
        "detail": verdict.detail,
        "rule": verdict.rule,
        "reason": verdict.reason,
    }


def _hop_facts(hop: HopEvidence, verdict: Verdict) -> dict[str, Any]:
    """A hop's own verdict, its facts and every control it asked (what a reader re-checks)."""
    controls = {k: v for k, v in to_jsonable(hop.controls).items() if v not in ((), [], None)}
    controls.pop("vantage_ok", None)
    controls.pop("kind", None)
    return {
        "hop": hop.number,
        "url": hop.url,
        "chain": list(hop.chain),
        **_summary(verdict),
        "evidence": dict(verdict.evidence),
        "controls": controls,
    }
