"""What the store hands out, frozen copies of rows (callers never hold a database row or a
connection), and the conversions between the probe's records and the tables' rows, which
are plain mappings of column values (probe/store/models.py holds the tables)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from measurements.observations import to_jsonable
from probe.classify.verdict import Location, MeasurementRecord, RunInfo, Vantage


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run with its vantage and how many measurements it holds, per verdict."""

    run_id: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    status: str
    probe_version: str
    vantage: Vantage
    settings: Mapping[str, Any]
    counts: Mapping[str, Any] | None  # what the sweep itself reported when it finished
    measurements: int
    verdicts: Mapping[str, int]  # verdict -> number of measurements; absent verdicts are 0
    location: Location = field(default_factory=Location)  # asn, country, and their sources


@dataclass(frozen=True, slots=True)
class MeasurementRow:
    """One stored measurement, without its evidence."""

    id: int
    run_id: str
    service: str
    category: str
    input: str
    verdict: str
    layer: str | None
    detail: str
    rule: str
    reason: str
    measured_at: dt.datetime
    duration_ms: float
    throughput_kbps: float | None
    baseline_kbps: float | None


@dataclass(frozen=True, slots=True)
class MeasurementDetail:
    """One stored measurement and its evidence (verdict_evidence and observations)."""

    row: MeasurementRow
    evidence: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One measurement joined with its run's declared vantage: what export writes."""

    measurement_id: int
    run_id: str
    service: str
    category: str
    input: str
    verdict: str
    layer: str | None
    detail: str
    rule: str
    measured_at: dt.datetime
    duration_ms: float
    throughput_kbps: float | None
    baseline_kbps: float | None
    vantage_name: str | None
    network_type: str | None
    asn: int | None
    country: str | None
    reason: str  # the sentence the verdict was written with; "(pruned)" past retention


# --- Between the probe's records, the tables and the detached rows ---------------------------


def run_values(info: RunInfo) -> dict[str, Any]:
    """The runs row that records a sweep's start (status "running")."""
    return {
        "run_id": info.run_id,
        "started_at": info.started_at,
        "finished_at": None,
        "status": "running",
        "probe_version": info.probe_version,
        "vantage_name": info.vantage.name,
        "network_type": info.vantage.network_type,
        "settings": to_jsonable(dict(info.settings)),
        "counts": None,
        **location_values(Location.declared(info.vantage.asn, info.vantage.country)),
    }


def location_of(r: Mapping[Any, Any]) -> Location:
    """A run's location from its row's columns (by name)."""
    note = r["location_note"]
    return Location(
        r["asn"], r["country"], r["network_name"], r["asn_source"], r["country_source"],
        (note,) if note else (),
    )  # fmt: skip


def location_values(location: Location) -> dict[str, Any]:
    """The run's location columns."""
    return {
        "asn": location.asn, "country": location.country, "network_name": location.network_name,
        "asn_source": location.asn_source, "country_source": location.country_source,
        "location_note": location.note,
    }  # fmt: skip


def measurement_values(rec: MeasurementRecord) -> dict[str, Any]:
    """The measurements row of a record (what probe.store.inserts writes; its evidence goes
    to evidence_data)."""
    v = rec.verdict
    return {
        "run_id": rec.run_id, "service": rec.service, "category": rec.category,
        "input": rec.input, "verdict": v.verdict, "layer": v.layer, "detail": v.detail,
        "rule": v.rule, "reason": v.reason, "measured_at": rec.measured_at,
        "duration_ms": rec.duration_ms, "throughput_kbps": v.throughput_kbps,
        "baseline_kbps": v.baseline_kbps, "throughput_bytes": rec.throughput_bytes,
        "throughput_address": v.throughput_address,
    }  # fmt: skip


def evidence_data(rec: MeasurementRecord) -> dict[str, Any]:
    """The JSON kept in the evidence table: the verdict's evidence and every observation."""
    return {
        "verdict_evidence": to_jsonable(dict(rec.verdict.evidence)),
        "observations": to_jsonable(rec.observations),
    }


# Revision 0003l's columns of runs: a read-only open of an older database has none of them.
LOCATION_COLUMNS = ("network_name", "asn_source", "country_source", "location_note")


def vantage_of(r: Mapping[Any, Any]) -> Vantage:
    """A run's declared vantage, from its row."""
    return Vantage(r["vantage_name"], r["network_type"], r["asn"], r["country"])


def run_summary(
    r: Mapping[Any, Any], verdicts: Mapping[str, int], location: Location | None = None
) -> RunSummary:
    """A summary of a run from its row, given its count of measurements per verdict, and its
    location (None: as a run before revision 0003l recorded it, declared)."""
    return RunSummary(
        run_id=r["run_id"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        status=r["status"],
        probe_version=r["probe_version"],
        vantage=vantage_of(r),
        settings=r["settings"],
        counts=r["counts"],
        measurements=sum(verdicts.values()),
        verdicts=dict(verdicts),
        location=location or Location.declared(r["asn"], r["country"]),
    )
