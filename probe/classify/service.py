"""A service's verdict from its inputs' verdicts, by one documented rule.

The rule (README, "How verdicts are decided"): a service is **blocked** when any of its inputs
is blocked (each blocked input already has a control behind it, so one is real interference
with part of the service); else **throttled** when any input is; else **accessible** when any
input is accessible; else **inconclusive**. The detail is the most frequent detail among the
inputs that gave the service its verdict, and the counts say how many inputs agreed.

Whether the interference is total or partial is the **scope**, counted over the service's
conclusive inputs (accessible, blocked or throttled: an inconclusive input says nothing either
way): ``all`` when every conclusive input is blocked or throttled, ``partial`` when some are
(``affected`` of ``conclusive``, e.g. 2 of 32 endpoints), None when none is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from probe.classify.verdict import MeasurementRecord

_PRECEDENCE = ("blocked", "throttled", "accessible", "inconclusive")
INTERFERED = frozenset({"blocked", "throttled"})
CONCLUSIVE = frozenset({"accessible", "blocked", "throttled"})


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
    scope: str | None = None  # "all", "partial", or None when nothing is blocked or throttled
    affected: int = 0  # inputs blocked or throttled
    conclusive: int = 0  # inputs accessible, blocked or throttled


def scope_of(affected: int, conclusive: int) -> str | None:
    """``all`` when every conclusive input is affected, ``partial`` when some are, else None."""
    if affected == 0:
        return None
    return "all" if affected == conclusive else "partial"


def scope_text(s: ServiceSummary) -> str:
    """The scope as a reader sees it: "all (3 of 3)", "partial (2 of 32)", or ""."""
    return f"{s.scope} ({s.affected} of {s.conclusive})" if s.scope else ""


@dataclass
class ServiceTally:
    """A service's inputs counted as they come (an export streams rows it cannot hold)."""

    service: str
    counts: Counter[str] = field(default_factory=Counter)
    # (verdict, detail) in first-seen order, and the layer of the first input that had it.
    details: Counter[tuple[str, str]] = field(default_factory=Counter)
    layers: dict[tuple[str, str], str | None] = field(default_factory=dict)

    def add(self, verdict: str, detail: str, layer: str | None) -> None:
        """Count one input's verdict."""
        self.counts[verdict] += 1
        self.details[(verdict, detail)] += 1
        self.layers.setdefault((verdict, detail), layer)

    def summary(self) -> ServiceSummary:
        """The service's verdict by the rule, from what was counted."""
        counts = self.counts
        verdict = next(v for v in _PRECEDENCE if counts[v])
        # most_common keeps first-seen order among equals: the first input's detail wins a tie.
        chosen = Counter({d: n for (v, d), n in self.details.items() if v == verdict})
        detail, _ = chosen.most_common(1)[0]
        affected = sum(counts[v] for v in INTERFERED)
        conclusive = sum(counts[v] for v in CONCLUSIVE)
        return ServiceSummary(
            self.service, verdict, detail, self.layers[(verdict, detail)],
            sum(counts.values()), counts[verdict], {v: n for v, n in counts.items() if n},
            scope_of(affected, conclusive), affected, conclusive,
        )  # fmt: skip


def summarize_services(records: Iterable[MeasurementRecord]) -> list[ServiceSummary]:
    """Services in first-seen order, each with its aggregated verdict."""
    return summarize_rows(
        (r.service, r.verdict.verdict, r.verdict.detail, r.verdict.layer) for r in records
    )


def summarize_rows(rows: Iterable[tuple[str, str, str, str | None]]) -> list[ServiceSummary]:
    """The same from (service, verdict, detail, layer) rows, as the store hands them out."""
    tallies: dict[str, ServiceTally] = {}
    for service, verdict, detail, layer in rows:
        tallies.setdefault(service, ServiceTally(service)).add(verdict, detail, layer)
    return [t.summary() for t in tallies.values()]
