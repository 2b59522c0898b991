"""The pure half of the OONI export: each stored observation's OONI test keys, checked
against the spec's tables (tests/probe/test_export_ooni.py holds them)."""

from __future__ import annotations

import base64

from measurements.failures import Failure
from measurements.observations import HTTPHop, HTTPObservation, HTTPTimings, to_jsonable
from probe.store.ooni_keys import FAILURES, build_test_keys
from tests.probe.test_export_ooni import OONI_FAILURES, check_test_keys


def test_our_failure_vocabulary_maps_onto_ooni_s() -> None:
    assert set(FAILURES) == {f.value for f in Failure}
    assert set(FAILURES.values()) <= OONI_FAILURES


def test_throughput_samples_become_cumulative_byte_events() -> None:
    observation = {
        "kind": "ThroughputObservation", "url": "https://cdn.example/big", "ip": "2001:db8::1",
        "sni": "cdn.example", "verified": True, "failure": None, "operation": None,
        "status": 200, "connect_ms": 1.0, "tls_ms": 2.0, "first_byte_ms": 3.0,
        "samples": [[100.0, 1000], [200.0, 5000]], "bytes": 5000, "duration_ms": 200.0,
        "goodput_kbps": 200.0,
    }  # fmt: skip
    keys = build_test_keys([observation], [])
    check_test_keys(keys, "throughput")
    events = keys["network_events"]
    assert [(e["num_bytes"], e["t"], e["address"]) for e in events] == [
        (1000, 0.1, "[2001:db8::1]:443"), (5000, 0.2, "[2001:db8::1]:443"),
    ]  # fmt: skip
    assert keys["x_throughput"][0]["goodput_kbps"] == 200.0


def test_redirect_hops_last_first_binary_bodies_and_refused_hops() -> None:
    def hop(url: str, status: int | None, body: bytes, refused: str | None = None) -> HTTPHop:
        return HTTPHop(url, None if refused else "127.0.0.1", None, None, status,
                       (("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")), None, None, len(body),
                       None, body, False, None, None, HTTPTimings(), refused=refused)  # fmt: skip

    observation = HTTPObservation("http://a.example/", (
        hop("http://a.example/", 302, b""),
        hop("https://b.example:8443/", 200, b"\xff\xfe binary"),
        hop("http://10.1.2.3/", None, b"", refused="not routable"),
    ), 30.0)  # fmt: skip
    keys = build_test_keys([to_jsonable(observation)])
    check_test_keys(keys, "redirects")
    assert [r["request"]["url"] for r in keys["requests"]] == [
        "https://b.example:8443/", "http://a.example/",
    ]  # fmt: skip
    assert [r["transaction_id"] for r in keys["requests"]] == [2, 1]
    assert keys["requests"][0]["address"] == "127.0.0.1:8443"
    body = keys["requests"][0]["response"]["body"]
    assert body == {"format": "base64", "data": base64.b64encode(b"\xff\xfe binary").decode()}
    response = keys["requests"][1]["response"]
    assert response["headers"] == {"Set-Cookie": "a=1"}  # the first value, as the spec says
    assert response["headers_list"] == [["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"]]
    assert keys["x_not_contacted"] == [
        {"url": "http://10.1.2.3/", "refused": "not routable", "tags": []}
    ]
