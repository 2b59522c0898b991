"""Stored measurements in the shapes of OONI's data format: one JSON measurement per line.

``probe export --format ooni`` writes, per input per run, one object of the base data format
(github.com/ooni/spec data-formats/df-000-base.md, version 0.2.0), so code written for OONI's
measurements reads ours. The envelope:

    measurement_start_time  when the input's measurement started, "YYYY-MM-DD HH:MM:SS" UTC
    test_start_time         when its run (the sweep) started, same format
    test_runtime            the input's duration, seconds (float)
    test_name               "web_connectivity" for a URL (ts-017: DNS, TCP, TLS, HTTP of a
                            URL, as we measure it); "tcp_connect" for a bare host:port
                            endpoint (ts-008: we only connect to it)
    input                   the URL or host:port, as stored
    probe_asn               "AS9198"; "AS0" when the run's ASN is unknown
    probe_cc                "KZ"; "ZZ" when unknown
    probe_ip                always "127.0.0.1": the database never holds the vantage's address
    report_id               the run: "<run start %Y%m%dT%H%M%SZ>_AS<asn>_<run_id>"
    id                      a UUID made from run_id and measurement_id (the same on every
                            export of the same database; the spec lets collectors clear it)
    software_name           "blocking-probe"; software_version: the probe that measured it
    data_format_version     "0.2.0"; extensions: the test-template formats in test_keys
    annotations             strings: engine_name, engine_version, vantage_name and
                            network_type (when declared; ours: "home", "mobile", ...),
                            verdict_source "blocking-probe" (our classifier, not OONI's)
    test_helpers            {} (our controls are listed under blocking_probe instead)

``test_keys`` hold the template lists (ooni_keys.py says how each observation maps, and what
is not mapped), ``agent`` "redirect", and our verdict under ``blocking_probe``:
measurement_id, run_id, service, category, verdict, layer, detail, rule, reason,
throughput_kbps, baseline_kbps, evidence_pruned, control_status and verdict_evidence.
When retention deleted the evidence (storage.retention), every list is empty and
``blocking_probe.evidence_pruned`` is true; the verdict row itself is always there.

Not emitted: OONI's web_connectivity analysis keys (``blocking``, ``accessible``,
``control``: their test helper's answer), which our verdict replaces; ``probe_network_name``
and ``resolver_*`` (the export reads only columns every schema revision has);
``test_version`` (we do not implement OONI's experiment versions); the backend's fields
(``bucket_date``, ``report_filename``, ``measurement_uid``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from probe.store.ooni_keys import build_test_keys, empty_test_keys
from probe.store.rows import ExportRow

DATA_FORMAT_VERSION = "0.2.0"
SOFTWARE_NAME = "blocking-probe"
EXTENSIONS: dict[str, int] = {
    "dnst": 0, "httpt": 0, "netevents": 0, "tcpconnect": 0, "tlshandshake": 0,
}  # fmt: skip
URL_TEST = "web_connectivity"
ENDPOINT_TEST = "tcp_connect"


@dataclass(frozen=True, slots=True)
class OONISource:
    """A measurement row with what an OONI measurement also needs: its run and evidence."""

    row: ExportRow
    run_started_at: dt.datetime
    probe_version: str
    evidence: Mapping[str, Any] | None  # None: deleted by retention


def ooni_time(moment: dt.datetime) -> str:
    """UTC as OONI writes times: "2026-11-29 01:02:03"."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: cannot export it as UTC")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def probe_asn(asn: int | None) -> str:
    """ "AS9198"; "AS0" when unknown, as the spec asks."""
    return f"AS{asn}" if asn is not None else "AS0"


def report_id(run_id: str, started_at: dt.datetime, asn: int | None) -> str:
    """One report per run, in the shape of OONI's report ids."""
    return f"{started_at.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}_{probe_asn(asn)}_{run_id}"


def measurement_uuid(run_id: str, measurement_id: int) -> str:
    """A version-4-shaped UUID from the run and row: stable across exports of one database."""
    digest = hashlib.sha256(f"{run_id}:{measurement_id}".encode("ascii")).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def ooni_test_name(input_: str) -> str:
    """web_connectivity for a URL, tcp_connect for a bare host:port."""
    return URL_TEST if "://" in input_ else ENDPOINT_TEST


def _annotations(row: ExportRow, probe_version: str) -> dict[str, str]:
    out = {"engine_name": SOFTWARE_NAME, "engine_version": probe_version}
    if row.vantage_name is not None:
        out["vantage_name"] = row.vantage_name
    if row.network_type is not None:
        out["network_type"] = row.network_type
    out["verdict_source"] = SOFTWARE_NAME
    return out


def _ours(row: ExportRow, evidence: Mapping[str, Any] | None) -> dict[str, Any]:
    """Our verdict and its evidence, under our own key."""
    verdict_evidence = (evidence or {}).get("verdict_evidence")
    controls = (
        verdict_evidence.get("control_status") if isinstance(verdict_evidence, dict) else None
    )
    return {
        "measurement_id": row.measurement_id, "run_id": row.run_id, "service": row.service,
        "category": row.category, "verdict": row.verdict, "layer": row.layer,
        "detail": row.detail, "rule": row.rule, "reason": row.reason,
        "throughput_kbps": row.throughput_kbps, "baseline_kbps": row.baseline_kbps,
        "evidence_pruned": evidence is None,
        "control_status": controls if isinstance(controls, list) else None,
        "verdict_evidence": verdict_evidence,
    }  # fmt: skip


def ooni_measurement(src: OONISource) -> dict[str, Any]:
    """One stored measurement as an OONI measurement (keys in the spec's order)."""
    row = src.row
    if src.evidence is None:
        keys = empty_test_keys()
    else:
        found = src.evidence.get("verdict_evidence")
        verdict_evidence = found if isinstance(found, dict) else {}
        controls = verdict_evidence.get("controls")
        keys = build_test_keys(
            src.evidence.get("observations") or [],
            verdict_evidence.get("chain_pem") or [],
            controls if isinstance(controls, dict) else None,
        )
    keys["blocking_probe"] = _ours(row, src.evidence)
    return {
        "annotations": _annotations(row, src.probe_version),
        "data_format_version": DATA_FORMAT_VERSION,
        "extensions": dict(EXTENSIONS),
        "id": measurement_uuid(row.run_id, row.measurement_id),
        "input": row.input,
        "measurement_start_time": ooni_time(row.measured_at),
        "probe_asn": probe_asn(row.asn),
        "probe_cc": row.country or "ZZ",
        "probe_ip": "127.0.0.1",
        "report_id": report_id(row.run_id, src.run_started_at, row.asn),
        "software_name": SOFTWARE_NAME,
        "software_version": src.probe_version,
        "test_helpers": {},
        "test_keys": keys,
        "test_name": ooni_test_name(row.input),
        "test_runtime": row.duration_ms / 1000.0,
        "test_start_time": ooni_time(src.run_started_at),
    }


def write_ooni(sources: Iterable[OONISource], out: TextIO) -> int:
    """Write one OONI measurement per line (JSONL, ASCII); return how many."""
    count = 0
    for src in sources:
        out.write(json.dumps(ooni_measurement(src)))
        out.write("\n")
        count += 1
    return count
