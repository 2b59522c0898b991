"""``probe export --format ooni``: a real sweep into a real SQLite file, checked against the
keys and types of OONI's published data formats (github.com/ooni/spec, data-formats/).

The tables below are written from the spec (df-000-base, df-001-httpt, df-002-dnst,
df-005-tcpconnect, df-006-tlshandshake, df-007-errors, df-008-netevents): the keys a
measurement must carry and each one's JSON type.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from measurements.observations import (
    DNSObservation,
    DNSResponse,
    TLSObservation,
)
from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
from probe.cli import main
from probe.store import open_database, queries
from probe.store.ooni import ooni_measurement
from probe.store.retention import prune
from tests.servers.dns_server import Inject, NXDomain
from tests.servers.sweeps import run_sweep, service_lines
from tests.servers.tcp_servers import SNIFilter, TLSServer
from tests.servers.world import World, running_world

NONE = type(None)
TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")  # "2006-01-02 15:04:05", UTC

# df-000-base.md: the top-level keys a client emits, and their types.
BASE_KEYS: dict[str, type | tuple[type, ...]] = {
    "annotations": dict,  # map[string]string
    "data_format_version": str,
    "extensions": dict,  # map[string]int
    "input": (str, NONE),  # nullable
    "measurement_start_time": str,
    "probe_asn": str,  # "AS1234", "AS0"
    "probe_cc": str,  # "IT", "ZZ"
    "probe_ip": str,  # "127.0.0.1" when not shared
    "report_id": str,
    "software_name": str,
    "software_version": str,
    "test_helpers": dict,
    "test_keys": dict,
    "test_name": str,
    "test_runtime": float,
    "test_start_time": str,
}
# df-002-dnst.md Query and Answer.
QUERY_KEYS = {
    "answers": list, "engine": str, "failure": (str, NONE), "hostname": str,
    "query_type": str, "resolver_address": str,
}  # fmt: skip
ANSWER_KEYS = {"answer_type": str, "ttl": (int, NONE)}
ANSWER_VALUE = {"A": ("ipv4", str), "AAAA": ("ipv6", str), "CNAME": ("hostname", str)}
ENGINES = {"unknown", "system", "getaddrinfo", "golang_net_resolver", "go", "udp", "tcp", "dot",
           "doh"}  # fmt: skip
# df-005-tcpconnect.md TCPConnect and Status.
TCP_KEYS = {"ip": str, "port": int, "status": dict}
STATUS_KEYS = {"success": bool, "failure": (str, NONE)}
# df-006-tlshandshake.md TLSHandshake; df-001-httpt.md BinaryData.
TLS_KEYS = {
    "network": str, "address": str, "cipher_suite": str, "failure": (str, NONE),
    "negotiated_protocol": str, "no_tls_verify": bool, "peer_certificates": list,
    "server_name": str, "tls_version": str,
}  # fmt: skip
BINARY_KEYS = {"format": str, "data": str}
# df-001-httpt.md Transaction, Request, Response, TorInfo.
TRANSACTION_KEYS = {"failure": (str, NONE), "request": dict, "response": dict}
REQUEST_KEYS = {
    "url": str, "method": str, "headers": dict, "headers_list": list,
    "body": (str, dict), "body_is_truncated": bool, "tor": dict,
}  # fmt: skip
RESPONSE_KEYS = {
    "code": int, "headers": dict, "headers_list": list, "body": (str, dict),
    "body_is_truncated": bool,
}  # fmt: skip
TOR_KEYS = {"exit_ip": (str, NONE), "exit_name": (str, NONE), "is_tor": bool}
# df-008-netevents.md Event.
EVENT_KEYS = {"operation": str, "failure": (str, NONE), "tags": list}
OPERATIONS = {"bytes_received_cumulative", "connect", "read", "read_from", "write", "write_to"}
# df-007-errors.md: the failure strings of current probes.
OONI_FAILURES = {
    "android_dns_cache_no_data", "connection_aborted", "connection_already_closed",
    "connection_refused", "connection_reset", "dns_bogon_error", "dns_no_answer",
    "dns_non_recoverable_failure", "dns_nxdomain_error", "dns_reply_with_wrong_query_id",
    "dns_refused_error", "dns_server_misbehaving", "dns_servfail_error",
    "dns_temporary_failure", "eof_error", "http_invalid_redirect_location_host",
    "http_request_failed", "host_unreachable", "generic_timeout_error",
    "http_unexpected_redirect_url", "http_unexpected_status_code", "interrupted",
    "json_parse_error", "network_down", "network_reset", "network_unreachable",
    "quic_incompatible_version", "ssl_failed_handshake", "ssl_invalid_hostname",
    "ssl_unknown_authority", "ssl_invalid_certificate", "unknown_failure",
}  # fmt: skip

NAMES = ["ref.test", "ok.test", "nx.test", "inject.test", "sni-reset.test", "mitm.test",
         "blockpage.test"]  # fmt: skip


def check(obj: Any, table: dict[str, Any], where: str) -> None:
    """Every key of ``table`` is in ``obj`` with its type (bool is no int, and no float)."""
    assert isinstance(obj, dict), f"{where}: not an object: {obj!r}"
    for key, types in table.items():
        assert key in obj, f"{where}: missing {key!r}"
        value = obj[key]
        allowed = types if isinstance(types, tuple) else (types,)
        if isinstance(value, bool):
            assert bool in allowed, f"{where}.{key}: {value!r} is a bool"
        else:
            assert isinstance(value, allowed), f"{where}.{key}: {value!r} is not {types}"


def check_failure(value: Any, where: str) -> None:
    assert value is None or value in OONI_FAILURES, f"{where}: {value!r} is no OONI failure"


@pytest.fixture(scope="module")
def world(ca: trustme.CA, ca_bundle: str) -> Iterator[World]:
    with running_world(ca, ca_bundle, NAMES) as w:
        w.name("nx.test", resolver=NXDomain())
        w.name("inject.test", resolver=Inject(forged=("127.0.0.2",), genuine=("127.0.0.1",)))
        yield w


@pytest.fixture(scope="module")
def swept(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep of one input per technique, plus a bare endpoint, into a SQLite file."""
    tmp = tmp_path_factory.mktemp("ooni")
    web = world.web
    sni_reset = world.peer(SNIFilter(web.https_port, {"sni-reset.test"}, "reset"))
    mitm = world.peer(
        TLSServer(
            trustme.CA(organization_name="Information Security Certification Authority"),
            ["mitm.test"],
        )
    )
    services = [
        *service_lines("ok", [f"https://ok.test:{web.https_port}/", f"http://ok.test:{web.http_port}/"]),
        f'endpoints = ["127.0.0.1:{web.http_port}"]',
        *service_lines("nx", [f"https://nx.test:{web.https_port}/"]),
        *service_lines("inject", [f"https://inject.test:{web.https_port}/"]),
        *service_lines("sni-reset", [f"https://sni-reset.test:{sni_reset.port}/"]),
        *service_lines("mitm", [f"https://mitm.test:{mitm.port}/"]),
        *service_lines("blockpage", [f"http://blockpage.test:{web.http_port}/blockpage"]),
    ]  # fmt: skip
    reference = f"https://ref.test:{web.https_port}/"
    code, db = run_sweep(world, tmp, services, reference, {"enabled": False})
    assert code == 0
    return db


def export_ooni(db: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["export", "--db", str(db), "--format", "ooni", *extra]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n")
    return [json.loads(line) for line in out.splitlines()]


def by_service(measurements: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in measurements:
        out.setdefault(m["test_keys"]["blocking_probe"]["service"], []).append(m)
    return out


def test_every_measurement_has_the_base_keys_with_their_types(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    measurements = export_ooni(swept, capsys)
    assert len(measurements) == 8  # 7 URLs and one endpoint
    for m in measurements:
        check(m, BASE_KEYS, m["input"])
        assert TIME.match(m["measurement_start_time"]) and TIME.match(m["test_start_time"])
        assert m["test_start_time"] <= m["measurement_start_time"]
        assert (m["probe_asn"], m["probe_cc"], m["probe_ip"]) == ("AS64500", "KZ", "127.0.0.1")
        assert m["data_format_version"] == "0.2.0"
        assert m["software_name"] == "blocking-probe" and m["software_version"]
        assert all(isinstance(v, str) for v in m["annotations"].values())
        assert m["annotations"]["vantage_name"] == "loopback-test"
        assert all(isinstance(v, int) for v in m["extensions"].values())
        assert m["report_id"].endswith("_AS64500_" + m["test_keys"]["blocking_probe"]["run_id"])
        assert 0 < m["test_runtime"] < 60
        expected = "web_connectivity" if "://" in m["input"] else "tcp_connect"
        assert m["test_name"] == expected
    assert len({m["id"] for m in measurements}) == 8
    assert len({m["report_id"] for m in measurements}) == 1  # one run, one report


def check_test_keys(keys: dict[str, Any], where: str) -> None:
    for q in keys["queries"]:
        check(q, QUERY_KEYS, f"{where} query")
        assert q["engine"] in ENGINES
        check_failure(q["failure"], f"{where} query")
        for a in q["answers"]:
            check(a, ANSWER_KEYS, f"{where} answer")
            check(a, dict([ANSWER_VALUE[a["answer_type"]]]), f"{where} answer")
    for t in keys["tcp_connect"]:
        check(t, TCP_KEYS, f"{where} tcp_connect")
        check(t["status"], STATUS_KEYS, f"{where} status")
        assert t["status"]["success"] is (t["status"]["failure"] is None)
        check_failure(t["status"]["failure"], f"{where} tcp_connect")
    for h in keys["tls_handshakes"]:
        check(h, TLS_KEYS, f"{where} tls")
        check_failure(h["failure"], f"{where} tls")
        for cert in h["peer_certificates"]:
            check(cert, BINARY_KEYS, f"{where} certificate")
            assert cert["format"] == "base64"
    for r in keys["requests"]:
        check(r, TRANSACTION_KEYS, f"{where} request")
        check(r["request"], REQUEST_KEYS, f"{where} request")
        check(r["request"]["tor"], TOR_KEYS, f"{where} tor")
        check(r["response"], RESPONSE_KEYS, f"{where} response")
        check_failure(r["failure"], f"{where} request")
        assert all(len(pair) == 2 for pair in r["response"]["headers_list"])
    for e in keys["network_events"]:
        check(e, EVENT_KEYS, f"{where} event")
        assert e["operation"] in OPERATIONS
        check_failure(e["failure"], f"{where} event")


def test_test_keys_follow_the_templates_and_carry_our_verdict(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    measurements = by_service(export_ooni(swept, capsys))
    for group in measurements.values():
        for m in group:
            check_test_keys(m["test_keys"], m["input"])
            ours = m["test_keys"]["blocking_probe"]
            assert {"verdict", "layer", "detail", "rule", "reason", "throughput_kbps",
                    "baseline_kbps"} <= set(ours)  # fmt: skip
            assert ours["evidence_pruned"] is False and ours["reason"]
    ok_https = next(m for m in measurements["ok"] if m["input"].startswith("https://"))
    keys = ok_https["test_keys"]
    assert keys["blocking_probe"]["verdict"] == "accessible"
    assert any(a == {"answer_type": "A", "ipv4": "127.0.0.1", "ttl": a["ttl"]}
               for q in keys["queries"] for a in q["answers"])  # fmt: skip
    assert "udp" in {q["engine"] for q in keys["queries"]}  # the resolver under test
    assert any(t["status"]["success"] for t in keys["tcp_connect"])
    tls = [h for h in keys["tls_handshakes"] if h["server_name"] == "ok.test"]
    assert tls and tls[0]["failure"] is None and tls[0]["tls_version"].startswith("TLSv1")
    page = keys["requests"][0]  # the last hop first, as OONI orders them
    assert page["response"]["code"] == 200 and page["request"]["method"] == "GET"
    assert page["request"]["url"] == ok_https["input"]
    endpoint = next(m for m in measurements["ok"] if "://" not in m["input"])
    assert endpoint["test_name"] == "tcp_connect" and endpoint["test_keys"]["tcp_connect"]


def test_failures_and_evidence_of_blocking(swept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    measurements = {k: v[0] for k, v in by_service(export_ooni(swept, capsys)).items()}
    nx = measurements["nx"]["test_keys"]
    assert nx["blocking_probe"]["detail"] == "dns.nxdomain"
    assert "dns_nxdomain_error" in {q["failure"] for q in nx["queries"]}
    assert any(q["rcode"] == 3 for q in nx["queries"])
    doh = [q for q in nx["queries"] if q["engine"] == "doh"]  # the control that disagreed
    assert doh and doh[0]["failure"] is None and doh[0]["resolver_address"].startswith("https://")
    inject = measurements["inject"]["test_keys"]
    assert inject["blocking_probe"]["detail"] == "dns.injection"
    late = [a["ipv4"] for q in inject["x_dns_duplicate_responses"] for a in q["answers"]]
    assert "127.0.0.1" in late  # the genuine answer, after the forged one
    reset = measurements["sni-reset"]["test_keys"]
    assert "connection_reset" in {h["failure"] for h in reset["tls_handshakes"]}
    mitm = measurements["mitm"]["test_keys"]
    assert mitm["blocking_probe"]["detail"] == "tls.mitm"
    chains = [h["peer_certificates"] for h in mitm["tls_handshakes"] if h["peer_certificates"]]
    assert chains, "the chain a tls.mitm verdict keeps is exported as DER"
    leaf = base64.b64decode(chains[0][0]["data"])
    shown = next(h for h in mitm["tls_handshakes"] if h["peer_certificates"])
    assert hashlib.sha256(leaf).hexdigest() == shown["x_certificates"][0]["sha256"]
    assert shown["failure"] == "ssl_unknown_authority"  # as OONI's verifying handshake says
    block = measurements["blockpage"]["test_keys"]
    assert block["blocking_probe"]["detail"] == "http.blockpage"
    assert isinstance(block["requests"][0]["response"]["body"], str)
    assert block["requests"][0]["response"]["body"]


def test_pruned_evidence_leaves_empty_lists_that_say_so(
    swept: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "pruned.sqlite"
    db.write_bytes(swept.read_bytes())
    result = prune(
        str(db), dt.timedelta(hours=1), now=dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    )
    assert result.evidence_deleted == 8
    for m in export_ooni(db, capsys):
        check(m, BASE_KEYS, m["input"])
        keys = m["test_keys"]
        assert all(keys[k] == [] for k in ("queries", "tcp_connect", "tls_handshakes",
                                           "requests", "network_events"))  # fmt: skip
        assert keys["blocking_probe"]["evidence_pruned"] is True
        assert keys["blocking_probe"]["reason"] == "(pruned)"
        assert keys["blocking_probe"]["verdict"] in ("accessible", "blocked", "inconclusive")


def test_filters_and_atomic_file_output(
    swept: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert [m["input"] for m in export_ooni(swept, capsys, "--service", "nx")] == [
        m["input"] for m in export_ooni(swept, capsys) if "nx.test" in m["input"]
    ]
    out = tmp_path / "ooni.jsonl"
    assert main(["export", "--db", str(swept), "--format", "ooni", "-o", str(out)]) == 0
    assert len(out.read_text(encoding="ascii").splitlines()) == 8
    assert "8 rows written" in capsys.readouterr().err


def test_the_same_export_from_postgresql(postgres_url: str) -> None:
    """On PostgreSQL the evidence is JSONB, not compressed: the export reads it the same."""
    t0 = dt.datetime(2026, 11, 29, 1, 2, 3, tzinfo=dt.UTC)
    run = "dddddddd" + "4" * 24
    observations = (
        DNSObservation("x.example", "A", "udp", "192.0.2.53:53", None, "NOERROR",
                       ("198.51.100.7",), (DNSResponse("NOERROR", ("198.51.100.7",), (), 60, 2.0),),
                       3.0),
        TLSObservation("198.51.100.7", 443, "x.example", "connection_reset", "tls_handshake",
                       20.0, None, None, None, (), None, None, 40.0),
    )  # fmt: skip
    reset = Verdict("blocked", "tls", "tls.reset", "tls.sni_filter", "Reset with its SNI.")
    db = open_database(postgres_url)
    try:
        db.begin_run(RunInfo(run, t0, Vantage(), "0.1.0", {}))
        db.record(MeasurementRecord(run, "x", "social", "https://x.example/", reset, t0, 80.0,
                                    observations))  # fmt: skip
        (m,) = [ooni_measurement(s) for s in queries.export_sources(db)]
    finally:
        db.close()
    check(m, BASE_KEYS, "postgresql")
    check_test_keys(m["test_keys"], "postgresql")
    assert (m["probe_asn"], m["probe_cc"], m["measurement_start_time"]) == (
        "AS0", "ZZ", "2026-11-29 01:02:03",
    )  # fmt: skip
    assert m["test_keys"]["queries"][0]["answers"] == [
        {"answer_type": "A", "ipv4": "198.51.100.7", "ttl": 60}
    ]
    assert m["test_keys"]["tcp_connect"][0]["status"] == {"success": True, "failure": None}
    assert m["test_keys"]["tls_handshakes"][0]["failure"] == "connection_reset"
    assert m["test_keys"]["blocking_probe"]["reason"] == "Reset with its SNI."
