"""The examples of docs/schema.md, made from real objects: the observation dataclasses, the
classifier's own verdicts on them, the control statuses it reports, and the store's
``evidence_data`` (what the evidence table holds). tests/test_schema_doc.py holds each example
in the doc equal to what this makes; after a change, rewrite them with

    PYTHONPATH=. python -m tests.schema_examples docs/schema.md
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

from measurements.observations import (
    Certificate,
    DNSObservation,
    DNSResponse,
    HTTPHop,
    HTTPObservation,
    HTTPTimings,
    TCPObservation,
    TLSObservation,
    to_jsonable,
)
from probe.classify import classify
from probe.classify.control_status import ControlSetup, as_json, control_status
from probe.classify.evidence import Controls, HelperReport, InputEvidence, PastRate
from probe.classify.fingerprints import load_bundled
from probe.classify.verdict import MeasurementRecord
from probe.store.rows import evidence_data
from tests.probe.test_throttle import (
    FAST,
    SLOW,
    accessible_evidence,
    delayed,
    flat,
    transfer,
    trials,
)
from tests.probe.test_throttle import innocuous as innocuous_trials

HOST = "www.example.test"
IP = "93.184.215.14"
T0 = dt.datetime(2026, 11, 29, 18, 0, tzinfo=dt.UTC)

CERT = Certificate(
    subject="CN=www.example.test", issuer="CN=Example Test CA,O=Example",
    sans=("www.example.test", "example.test"), not_before="2026-01-01T00:00:00Z",
    not_after="2027-01-01T00:00:00Z", sha256="5f" * 32, spki_sha256="a1" * 32,
    pem="-----BEGIN CERTIFICATE-----\n(not stored)\n-----END CERTIFICATE-----\n",
)  # fmt: skip
ANSWER = DNSResponse("NOERROR", ("10.10.34.35",), (), 300, 11.8)
DNS = DNSObservation(HOST, "A", "udp", "192.0.2.53:53", None, "NOERROR", ("10.10.34.35",),
                     (ANSWER,), 12.1)  # fmt: skip
DOH = DNSObservation(HOST, "A", "doh", "https://dns.example/dns-query", None, "NOERROR", (IP,),
                     (DNSResponse("NOERROR", (IP,), (), 3600, 48.0),), 48.3)  # fmt: skip
TCP = TCPObservation(IP, 443, "connection_reset", None, 41.0)
TLS = TLSObservation(IP, 443, HOST, None, None, 20.5, 31.0, "TLSv1.3", "h2", (CERT,), True,
                     None, 52.0)  # fmt: skip
TIMINGS = HTTPTimings(connect_ms=20.4, tls_ms=31.0, first_byte_ms=95.2, total_ms=101.7)
HOP = HTTPHop(
    url=f"https://{HOST}/", ip=IP, failure=None, operation=None, status=200,
    headers=(("content-type", "text/html; charset=utf-8"), ("server", "nginx")),
    location=None, title="Example", body_length=1256, body_sha256="3b" * 32,
    body_head=b"<!doctype html><title>Example</title>", truncated=False,
    tls_version="TLSv1.3", certificate=CERT, timings=TIMINGS,
)  # fmt: skip
HTTP = HTTPObservation(f"https://{HOST}/", (HOP,), 102.0)
THROUGHPUT = transfer(flat(SLOW), seconds=0.5)


def observations() -> dict[str, Any]:
    """One stored example of each kind, as to_jsonable writes it into ``observations``."""
    return {
        "DNSObservation": to_jsonable(DNS),
        "TCPObservation": to_jsonable(TCP),
        "TLSObservation": to_jsonable(TLS),
        "HTTPObservation": to_jsonable(HTTP),
        "ThroughputObservation": to_jsonable(THROUGHPUT),
    }


def _engine_evidence(
    ev: InputEvidence, ctl: Controls, setup: ControlSetup, asked: frozenset[str]
) -> dict[str, Any]:
    """The verdict and its evidence as probe.engine.sweep (``_measure``) assembles them."""
    verdict = classify(ev, ctl, load_bundled())
    controls = {k: v for k, v in to_jsonable(ctl).items() if v not in ((), [], None)}
    controls.pop("vantage_ok", None)
    controls.pop("kind", None)
    status = as_json(control_status(setup, ev, ctl, asked))
    verdict = dataclasses.replace(
        verdict,
        evidence={**verdict.evidence, "controls": controls, "control_status": status,
                  "deadline_exceeded": False},
    )  # fmt: skip
    rec = MeasurementRecord("0" * 32, "example", "news", ev.input, verdict, T0, 180.0,
                            (*ev.dns, *ev.tls, *ev.http))  # fmt: skip
    return evidence_data(rec)


def blocked_evidence() -> dict[str, Any]:
    """A whole evidence row: the resolver's private answer against DoH's (dns.bogon)."""
    ev = InputEvidence("url", f"https://{HOST}/", HOST, "https", dns=(DNS,))
    helper = HelperReport((IP,), True, True, 200, "Example", 1256, HOST, 120.0)
    ctl = Controls(doh=(DOH,), helper=helper)
    setup = ControlSetup(doh=1, helper=True, references=2)
    return _engine_evidence(ev, ctl, setup, frozenset({"helper"}))


def throttle_facts() -> dict[str, Any]:
    """``verdict_evidence.throughput`` of a throttled input (rule 7), trials summarised."""
    ev = accessible_evidence(trials(delayed(150_000, FAST, SLOW)))
    history = (PastRate("2026-11-28T18:00:00+00:00", 16000.0, "accessible", "ok", IP),)
    ctl = Controls(
        throughput_innocuous=innocuous_trials(flat(FAST)),
        throughput_reference=trials(flat(FAST)),
        throughput_history=history,
    )
    verdict = classify(ev, ctl, load_bundled())
    facts: dict[str, Any] = to_jsonable(dict(verdict.evidence))["throughput"]
    return {"verdict": [verdict.verdict, verdict.detail, verdict.throughput_kbps,
                        verdict.baseline_kbps], "throughput": facts}  # fmt: skip


def examples() -> dict[str, Any]:
    """Every example of the doc, by the name its ``<!-- example: NAME -->`` marker gives."""
    return {**observations(), "evidence": blocked_evidence(), "throttle": throttle_facts()}


MARKER = re.compile(r"<!-- example: (\w+) -->\n```json\n(.*?)\n```", re.S)


def _flat(value: Any) -> bool:
    """A value short enough for one line: a scalar, or a list of scalars or of such lists."""
    if isinstance(value, list):
        return all(not isinstance(v, dict | list) or (isinstance(v, list) and _flat(v))
                   for v in value)  # fmt: skip
    return not isinstance(value, dict)


def render(value: Any, indent: str = "") -> str:
    """An example as the doc prints it: indented JSON, short lists on one line."""
    if _flat(value):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    inner = indent + "  "
    if isinstance(value, list):
        items = [inner + render(v, inner) for v in value]
        return "[\n" + ",\n".join(items) + f"\n{indent}]"
    pairs = [f"{inner}{json.dumps(k)}: {render(v, inner)}" for k, v in value.items()]
    return "{\n" + ",\n".join(pairs) + f"\n{indent}}}"


def rewrite(doc: Path) -> None:
    """Replace every example block of the doc with what this makes now."""
    made = examples()

    def block(m: re.Match[str]) -> str:
        return f"<!-- example: {m[1]} -->\n```json\n{render(made[m[1]])}\n```"

    doc.write_text(MARKER.sub(block, doc.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        rewrite(Path(sys.argv[1]))
    else:
        for name, value in examples().items():
            print(f"<!-- example: {name} -->\n```json\n{render(value)}\n```\n")
