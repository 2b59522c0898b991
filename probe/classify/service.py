"""A service's verdict from its inputs' verdicts, by one documented rule.

The rule (README, "How verdicts are decided"): a service is **blocked** when any of its inputs
is blocked (each blocked input already has a control behind it, so one is real interference
with part of the service); else **throttled** when any input is; else **accessible** when any
input is accessible; else **inconclusive**. The detail is the most frequent detail among the
inputs that gave the service its verdict, and the counts say how many inputs agreed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from probe.classify.verdict import MeasurementRecord

_PRECEDENCE = ("blocked", "throttled", "accessible", "inconclusive")


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """One service's verdict in one run."""

    service: str
    verdict: str
    detail: str
    layer: str | None
    inputs: int
    agreeing: int  # inputs with the service's verdict
    counts: dict[str, int]


def summarize_services(records: Iterable[MeasurementRecord]) -> list[ServiceSummary]:
    """Services in first-seen order, each with its aggregated verdict."""
    by_service: dict[str, list[MeasurementRecord]] = defaultdict(list)
    for rec in records:
        by_service[rec.service].append(rec)
    out = []
    for service, recs in by_service.items():
        counts: Counter[str] = Counter(r.verdict.verdict for r in recs)
        verdict = next(v for v in _PRECEDENCE if counts[v])
        chosen = [r.verdict for r in recs if r.verdict.verdict == verdict]
        detail, _ = Counter(v.detail for v in chosen).most_common(1)[0]
        layer = next((v.layer for v in chosen if v.detail == detail), None)
        out.append(
            ServiceSummary(service, verdict, detail, layer, len(recs), len(chosen), dict(counts))
        )
    return out
