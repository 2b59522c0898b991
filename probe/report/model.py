"""The report's shapes: frozen dataclasses that query.py fills and text, JSON and HTML read.

Nothing here touches the database: a Report is a detached summary, small whatever the number
of measurements behind it (per service and vantage: one row per day, 24 hours, a few facts).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from probe.classify.verdict import VERDICTS

HOURS = 24
# The verdicts whose hours of day are profiled: what a censor does, not what a link does.
INTERFERENCE: tuple[str, ...] = ("blocked", "throttled")


@dataclass(frozen=True, slots=True)
class Filters:
    """What the report covers; None or empty: no limit. ``until`` is exclusive."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    services: tuple[str, ...] = ()
    vantage: str | None = None
    country: str | None = None
    asn: int | None = None


@dataclass(frozen=True, slots=True, order=True)
class VantageKey:
    """A vantage as its runs declared or detected it (runs.vantage_name, asn, country)."""

    name: str | None
    asn: int | None
    country: str | None

    def label(self) -> str:
        """``name (AS123, KZ)``, with what is unknown left out."""
        extra = ", ".join(x for x in (f"AS{self.asn}" if self.asn else "", self.country) if x)
        name = self.name or "(unnamed)"
        return f"{name} ({extra})" if extra else name


@dataclass(frozen=True, slots=True)
class DayCounts:
    """One UTC day's results of one service at one vantage, per verdict (VERDICTS order)."""

    day: dt.date
    counts: tuple[int, int, int, int]

    def of(self, verdict: str) -> int:
        """The count of one verdict."""
        return self.counts[VERDICTS.index(verdict)]


@dataclass(frozen=True, slots=True)
class Episode:
    """When a verdict was seen: how often, first and last time (None: never)."""

    count: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class DetailShare:
    """The detail most blocked and throttled results carry, and its share of them."""

    detail: str
    count: int
    share: float


@dataclass(frozen=True, slots=True)
class ThrottleRates:
    """Measured goodput of throttled results against their baselines (kbit/s)."""

    count: int
    median_kbps: float
    min_kbps: float
    median_baseline_kbps: float
    median_ratio: float  # throughput / baseline, the median of the per-result ratios


@dataclass(frozen=True, slots=True)
class Concentration:
    """A verdict concentrated in a few hours of the UTC day (hours.find_concentration)."""

    verdict: str
    start_hour: int  # 0-23
    hours: int  # how many consecutive hours (the window may wrap past midnight)
    share: float  # of this verdict's results that fall in the window
    measurement_share: float  # of all the results (any verdict) in the window

    @property
    def end_hour(self) -> int:
        """The hour the window ends (exclusive; 24 means midnight)."""
        end = self.start_hour + self.hours
        return end if end <= HOURS else end - HOURS

    def describe(self) -> str:
        """``throttled mostly 18:00-24:00 UTC: 92% of throttled results in 6 of 24 hours``."""
        return (
            f"{self.verdict} mostly {self.start_hour:02d}:00-{self.end_hour:02d}:00 UTC: "
            f"{self.share:.0%} of {self.verdict} results in {self.hours} of {HOURS} hours "
            f"(which hold {self.measurement_share:.0%} of all results)"
        )


@dataclass(frozen=True, slots=True)
class GroupReport:
    """Everything the report says about one service at one vantage."""

    service: str
    vantage: VantageKey
    counts: Mapping[str, int]  # verdict -> results; every verdict present
    days: tuple[DayCounts, ...]  # by day, days without results left out
    blocked: Episode
    throttled: Episode
    dominant: DetailShare | None  # among blocked and throttled results; None: none
    rates: ThrottleRates | None  # None: no throttled result with both rates
    hours: Mapping[str, tuple[int, ...]]  # "blocked", "throttled", "all" -> 24 counts
    concentrations: tuple[Concentration, ...]

    @property
    def total(self) -> int:
        """How many results in all."""
        return sum(self.counts.values())

    @property
    def interfered(self) -> bool:
        """Whether any result was blocked or throttled."""
        return self.blocked.count > 0 or self.throttled.count > 0


@dataclass(frozen=True, slots=True)
class OutageSpan:
    """A window in which a vantage reached no reference host (ended None: still out)."""

    vantage: str | None
    started_at: dt.datetime
    ended_at: dt.datetime | None

    def duration_s(self, now: dt.datetime) -> float:
        """How long it lasted (until ``now`` if it has not ended)."""
        return ((self.ended_at or now) - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class Report:
    """The whole report: its scope, one GroupReport per service and vantage, the outages."""

    filters: Filters
    generated_at: dt.datetime
    first: dt.datetime | None  # the earliest and latest result in scope
    last: dt.datetime | None
    groups: tuple[GroupReport, ...]  # by service, then vantage
    outages: tuple[OutageSpan, ...] = field(default=())

    @property
    def total(self) -> int:
        """How many results in scope."""
        return sum(g.total for g in self.groups)

    def findings(self) -> list[str]:
        """The patterns a reader must not miss, one sentence each: hours, then episodes."""
        lines = [
            f"{g.service} at {g.vantage.label()}: {c.describe()}"
            for g in self.groups
            for c in g.concentrations
        ]
        for g in self.groups:
            for verdict, ep in (("blocked", g.blocked), ("throttled", g.throttled)):
                if ep.count and ep.first and ep.last:
                    how = f", mostly {g.dominant.detail}" if g.dominant else ""
                    lines.append(
                        f"{g.service} at {g.vantage.label()}: {verdict} {ep.count} times "
                        f"from {ep.first:%Y-%m-%d %H:%M} to {ep.last:%Y-%m-%d %H:%M} UTC{how}"
                    )
        return lines


@dataclass(frozen=True, slots=True)
class TimelineCell:
    """One service in one time bucket, per verdict (VERDICTS order): the heatmap's cell."""

    service: str
    bucket: dt.datetime  # the bucket's start (UTC)
    counts: tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class ThroughputPoint:
    """Mean goodput and baseline of a service's results in one bucket, throttled or not."""

    service: str
    bucket: dt.datetime
    throttled: bool
    mean_kbps: float
    mean_baseline_kbps: float | None
    count: int


@dataclass(frozen=True, slots=True)
class PlotData:
    """What the HTML page's plots need beyond the report: finer buckets over time."""

    bucket_hours: int  # 1: hourly cells; 24: daily
    timeline: tuple[TimelineCell, ...]
    throughput: tuple[ThroughputPoint, ...]
