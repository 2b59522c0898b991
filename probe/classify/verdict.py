"""What the probe concludes and records: verdicts, measurement records, run metadata."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from measurements.observations import Observation

VerdictName = Literal["accessible", "blocked", "throttled", "inconclusive"]
Layer = Literal["dns", "tcp", "tls", "http"]

VERDICTS: tuple[str, ...] = ("accessible", "blocked", "throttled", "inconclusive")
LAYERS: tuple[str, ...] = ("dns", "tcp", "tls", "http")
DETAILS: frozenset[str] = frozenset(
    {
        "dns.nxdomain", "dns.servfail", "dns.bogon", "dns.blockpage_ip", "dns.injection",
        "tcp.timeout", "tcp.reset", "tcp.refused",
        "tls.reset", "tls.timeout", "tls.eof", "tls.mitm",
        "http.blockpage", "http.redirect", "http.reset", "http.timeout", "http.diff",
        "throttle.sni", "throttle.ip",
        "http.malformed", "site.down", "vantage.offline", "control.failed", "probe.error",
        "probe.busy", "ok",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classifier's answer for one input, with the rule that decided and why."""

    verdict: VerdictName
    layer: Layer | None
    detail: str  # one of DETAILS
    rule: str  # id of the deciding rule, e.g. "dns.bogon" or "tls.sni_filter"
    reason: str  # one sentence a reader can check against the evidence
    evidence: Mapping[str, Any] = field(default_factory=dict)  # JSON-ready facts the rule used
    throughput_kbps: float | None = None
    baseline_kbps: float | None = None
    throughput_address: str | None = None  # where the rate was timed (rule 7's history)

    def __post_init__(self) -> None:
        if self.detail not in DETAILS:
            raise ValueError(f"detail {self.detail!r} is not in the vocabulary")


@dataclass(frozen=True, slots=True)
class Vantage:
    """What the volunteer chose to declare about the vantage point; never its address."""

    name: str | None = None
    network_type: str | None = None  # "home", "mobile", "datacenter", ...
    asn: int | None = None
    country: str | None = None  # ISO 3166 alpha-2


LOCATION_SOURCES: tuple[str, ...] = ("declared", "helper", "geoip_db")


@dataclass(frozen=True, slots=True)
class Location:
    """Where a sweep measured: AS number and country, and where each came from.

    ``declared`` (vantage.asn, vantage.country) wins over ``helper`` (its GET /v1/whoami)
    and ``geoip_db`` (vantage.geoip_db); a None value is unknown, and ``problems`` says why.
    Never an address.
    """

    asn: int | None = None
    country: str | None = None
    network_name: str | None = None  # the AS's organisation, when a database named it
    asn_source: str | None = None
    country_source: str | None = None
    problems: tuple[str, ...] = ()  # why a value is unknown

    def __post_init__(self) -> None:
        for source in (self.asn_source, self.country_source):
            if source is not None and source not in LOCATION_SOURCES:
                raise ValueError(f"location source {source!r} is not one of {LOCATION_SOURCES}")

    @classmethod
    def declared(cls, asn: int | None, country: str | None) -> Location:
        """What the volunteer declared (either may be None), and nothing detected."""
        return cls(
            asn, country, None,
            "declared" if asn is not None else None, "declared" if country is not None else None,
        )  # fmt: skip

    @property
    def unknown(self) -> bool:
        """True when neither the AS nor the country is known."""
        return self.asn is None and self.country is None

    @property
    def note(self) -> str | None:
        """The problems as one line for the run record, or None."""
        return "; ".join(self.problems) or None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One sweep: when, from where, with which settings."""

    run_id: str
    started_at: dt.datetime  # UTC
    vantage: Vantage
    probe_version: str
    settings: Mapping[str, Any]  # the effective configuration (no secrets, no addresses of ours)


@dataclass(frozen=True, slots=True)
class MeasurementRecord:
    """One input measured in one run: its verdict and every observation behind it."""

    run_id: str
    service: str
    category: str
    input: str  # a URL, or host:port for a bare endpoint
    verdict: Verdict
    measured_at: dt.datetime  # UTC, when the measurement of this input started
    duration_ms: float
    observations: tuple[Observation, ...] = ()
    throughput_bytes: int | None = None  # every byte its throughput test read (the budget)
