"""The control helper: a real helper server measuring real local servers, and its client."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import trustme

from measurements.addresses import parse_networks
from probe.helper_client import HelperClient, report_from_json, transfer_from_json
from probe.servers.helper import BadRequest, HelperSettings, HourlyBudget, parse_throughput
from tests.servers.dns_server import Answer, ScriptedDNSServer
from tests.servers.helper_server import running_helper
from tests.servers.http_server import WebServer
from tests.servers.tcp_servers import ClosedPort, TLSServer
from tests.servers.throughput_server import ByteServer, Pacer


@pytest.fixture
async def helper(ca_bundle: str, dns_server: ScriptedDNSServer) -> AsyncIterator[str]:
    settings = HelperSettings(dns_server.address, ca_bundle, parse_networks(["127.0.0.0/8"]), 2.0)
    async with running_helper(settings) as url:
        yield url


@pytest.fixture
async def dns_server() -> AsyncIterator[ScriptedDNSServer]:
    async with ScriptedDNSServer() as server:
        yield server


async def test_helper_sees_a_working_page(
    helper: str, ca: trustme.CA, ca_bundle: str, dns_server: ScriptedDNSServer
) -> None:
    dns_server.set("ok.test", Answer("127.0.0.1"))
    async with WebServer(ca, ["ok.test"]) as web:
        client = HelperClient(helper, ca_bundle, 10.0)
        try:
            report = await client.check(f"https://ok.test:{web.https_port}/", "127.0.0.1")
        finally:
            await client.aclose()
    assert report is not None
    assert (report.tcp_ok, report.tls_valid, report.status) == (True, True, 200)
    assert report.title == "Welcome to ok.test"
    assert report.addresses == ("127.0.0.1",) and report.final_host == "ok.test"


async def test_helper_reports_what_it_cannot_reach(helper: str, ca_bundle: str) -> None:
    async with ClosedPort() as closed:
        client = HelperClient(helper, ca_bundle, 10.0)
        try:
            report = await client.check(f"127.0.0.1:{closed.port}", "127.0.0.1")
        finally:
            await client.aclose()
    assert report is not None and report.tcp_ok is False and report.status is None


async def test_helper_sees_an_untrusted_chain(helper: str, rogue_ca: trustme.CA) -> None:
    async with TLSServer(rogue_ca, ["mitm.test"]) as server:
        client = HelperClient(helper, None, 10.0)
        try:
            report = await client.check(f"https://mitm.test:{server.port}/", "127.0.0.1")
        finally:
            await client.aclose()
    assert report is not None and report.tcp_ok is True and report.tls_valid is False


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"input": "https://x.test/", "address": "10.0.0.1"}, 400),  # private: never measured
        ({"input": "https://x.test/", "address": "x.test"}, 400),
        ({"input": "ftp://x.test/", "address": "127.0.0.1"}, 400),
        ({"input": "x.test", "address": "127.0.0.1"}, 400),
        ({"input": "x.test:80", "address": "127.0.0.1", "extra": 1}, 400),
        # private IPv4 inside IPv6, or in a legacy spelling: refused before any packet
        ({"input": "x.test:80", "address": "2002:a00:1::"}, 400),  # 6to4
        ({"input": "x.test:80", "address": "64:ff9b::a00:1"}, 400),  # NAT64
        ({"input": "x.test:80", "address": "2001:0:5db8:d70e::f5ff:fffe"}, 400),  # Teredo
        ({"input": "x.test:80", "address": "::ffff:0:a00:1"}, 400),  # IPv4-translated
        ({"input": "x.test:80", "address": "0xa000001"}, 400),
        ({"input": "x.test:80", "address": "fe80::1%eth0"}, 400),
    ],
)
async def test_helper_refuses_bad_or_unsafe_checks(
    helper: str, body: dict[str, object], status: int
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{helper}/v1/check", json=body)
    assert response.status_code == status and "error" in response.json()


async def test_helper_measures_a_legacy_spelling_at_the_address_it_denotes(helper: str) -> None:
    # 2130706433 is 127.0.0.1 to every connector; the helper judges and measures that address.
    async with ClosedPort() as closed, httpx.AsyncClient() as client:
        body = {"input": f"x.test:{closed.port}", "address": "2130706433"}
        response = await client.post(f"{helper}/v1/check", json=body)
    assert response.status_code == 200 and response.json()["tcp_ok"] is False


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("2002:a00:1::", "private (inside 6to4)"),
        ("2002:5db8:d70e::1", "tunnel (6to4)"),
        ("64:ff9b::7f00:1", None),  # 127.0.0.1 behind NAT64: routable here
        ("64:ff9b::a9fe:a9fe", "link-local (inside NAT64)"),
        ("0xa9fea9fe", "link-local"),
        ("0x7f.1", None),
    ],
)
def test_throughput_requests_judge_every_embedding_and_spelling(
    address: str, refused: str | None
) -> None:
    settings = HelperSettings(routable=parse_networks(["127.0.0.0/8"]))
    body = {"url": "https://x.test/", "address": address, "max_bytes": 1, "max_seconds": 1,
            "trials": 1}  # fmt: skip
    if refused is None:
        assert parse_throughput(body, settings).address in ("127.0.0.1", "64:ff9b::7f00:1")
    else:
        with pytest.raises(BadRequest, match=re.escape(f"is {refused}: not measured")):
            parse_throughput(body, settings)


async def test_an_unreachable_helper_is_a_missing_control() -> None:
    async with ClosedPort() as closed:
        client = HelperClient(f"http://127.0.0.1:{closed.port}", None, 2.0)
        try:
            assert await asyncio.wait_for(client.check("x.test:80", "127.0.0.1"), 5) is None
        finally:
            await client.aclose()


def test_report_parsing_rejects_other_versions_and_types() -> None:
    assert report_from_json({"version": 2, "tcp_ok": True}) is None
    report = report_from_json(
        {"version": 1, "tcp_ok": "yes", "status": True, "addresses": ["a", 3]}
    )
    assert report is not None and report.tcp_ok is None and report.status is None
    assert report.addresses == ("a",)


# ------------------------------------------------------------------ throughput (rule 7)


async def test_helper_times_a_resource_at_an_address(helper: str, ca: trustme.CA) -> None:
    # Through a policer, so the helper's rate is a known one; the helper reads what it was
    # asked for, one transfer after the other, and sends every observation back whole.
    async with ByteServer(ca, ["cdn.test"]) as origin, Pacer(origin.port, rate=50_000) as slow:
        client = HelperClient(helper, None, 5.0)
        try:
            url = f"https://cdn.test:{slow.port}/bytes/1000000"
            got = await client.throughput(
                url, "127.0.0.1", max_bytes=20_000, max_seconds=0.5, trials=3
            )
        finally:
            await client.aclose()
    assert len(got) == 3 and len(slow.connections) == 3
    assert all(o.url == url and o.ip == "127.0.0.1" and o.verified for o in got)
    assert all(o.status == 206 and o.failure is None and o.samples for o in got)
    assert origin.ranges == ["bytes=0-19999"] * 3
    for o in got:  # 50 kB/s: 400 kbit/s, whatever came at once with the headers
        assert o.goodput_kbps is not None and 250 < o.goodput_kbps < 600
    spans = sorted(slow.intervals())
    assert all(a[1] <= b[0] + 0.05 for a, b in itertools.pairwise(spans))  # one at a time


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"url": "https://x.test/", "address": "10.0.0.1", "max_bytes": 1, "max_seconds": 1,
          "trials": 1}, 400),  # private: never measured
        ({"url": "https://x.test/", "address": "127.0.0.1", "max_bytes": 1 << 30,
          "max_seconds": 1, "trials": 1}, 400),  # more than the helper's line will pay for
        ({"url": "https://x.test/", "address": "127.0.0.1", "max_bytes": 1, "max_seconds": 1,
          "trials": 50}, 400),
        ({"url": "https://x.test/", "address": "127.0.0.1", "max_bytes": 1,
          "max_seconds": 1}, 400),  # a key missing
        ({"url": "https://x.test/", "address": "127.0.0.1", "max_bytes": True,
          "max_seconds": 1, "trials": 1}, 400),
    ],
)  # fmt: skip
async def test_helper_refuses_bad_or_unsafe_throughput_requests(
    helper: str, body: dict[str, object], status: int
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{helper}/v1/throughput", json=body)
    assert response.status_code == status and "error" in response.json()


async def test_a_failed_helper_transfer_request_is_a_missing_control() -> None:
    async with ClosedPort() as closed:
        client = HelperClient(f"http://127.0.0.1:{closed.port}", None, 2.0)
        try:
            got = await client.throughput(
                "https://x.test/", "127.0.0.1", max_bytes=1, max_seconds=1, trials=1
            )
        finally:
            await client.aclose()
    assert got == ()


def test_transfer_parsing_checks_every_field() -> None:
    good = {
        "url": "https://x.test/", "ip": "192.0.2.1", "sni": "x.test", "verified": True,
        "failure": None, "operation": None, "status": 200, "connect_ms": 1.0, "tls_ms": 2.0,
        "first_byte_ms": 3, "samples": [[100.0, 5000], [200, 9000]], "bytes": 9000,
        "duration_ms": 210.5, "goodput_kbps": 350.0, "stopped": "seconds", "error": None,
        "kind": "ThroughputObservation",
    }  # fmt: skip
    obs = transfer_from_json(good)
    assert obs is not None and obs.samples == ((100.0, 5000), (200.0, 9000))
    assert (obs.bytes, obs.first_byte_ms, obs.stopped) == (9000, 3, "seconds")
    for key, bad in [("bytes", "9000"), ("samples", [[1.0]]), ("samples", [[1.0, 2.5]]),
                     ("status", True), ("verified", None), ("goodput_kbps", "fast"),
                     ("sni", 5), ("url", None)]:  # fmt: skip
        assert transfer_from_json({**good, key: bad}) is None, key
    assert transfer_from_json([good]) is None


# ------------------------------------------------------------------ who may use it, how much


async def test_a_helper_with_a_token_serves_only_who_has_it(ca: trustme.CA) -> None:
    settings = HelperSettings(routable=parse_networks(["127.0.0.0/8"]), token="s3cret")
    check = {"input": "x.test:1", "address": "127.0.0.1"}
    async with running_helper(settings) as url, httpx.AsyncClient() as raw:
        assert (await raw.get(f"{url}/v1/health")).status_code == 200  # no token needed
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = await raw.post(f"{url}/v1/check", json=check, headers=headers)
            assert response.status_code == 401 and "token" in response.json()["error"]
        response = await raw.post(f"{url}/v1/throughput", json={}, headers={})
        assert response.status_code == 401
        for token, expected in ((None, None), ("wrong", None), ("s3cret", False)):
            client = HelperClient(url, None, 5.0, token=token)
            try:
                report = await client.check("x.test:1", "127.0.0.1")
            finally:
                await client.aclose()
            got = None if report is None else report.tcp_ok
            assert got is expected, token  # port 1: closed, as the helper says when let in


async def test_the_hourly_transfer_budget_bounds_what_askers_make_the_helper_download(
    ca: trustme.CA, ca_bundle: str
) -> None:
    # Room for one test of 3 x 20 kB: the second is refused (429) until the hour has passed,
    # and a helper with no budget times nothing (403). A refusal is a missing control.
    routable = parse_networks(["127.0.0.0/8"])
    async with ByteServer(ca, ["cdn.test"]) as origin:
        url = f"https://cdn.test:{origin.port}/bytes/1000000"
        body = {"url": url, "address": "127.0.0.1", "max_bytes": 20_000, "max_seconds": 2,
                "trials": 3}  # fmt: skip
        settings = HelperSettings(
            ca_bundle=ca_bundle, routable=routable, throughput_bytes_per_hour=100_000
        )
        async with running_helper(settings) as helper, httpx.AsyncClient() as raw:
            first = await raw.post(f"{helper}/v1/throughput", json=body)
            assert first.status_code == 200
            assert [t["bytes"] for t in first.json()["transfers"]] == [20_000] * 3
            second = await raw.post(f"{helper}/v1/throughput", json=body)
            assert second.status_code == 429 and "budget" in second.json()["error"]
            client = HelperClient(helper, None, 5.0)
            try:
                assert await client.throughput(url, "127.0.0.1", max_bytes=20_000,
                                               max_seconds=2, trials=3) == ()  # fmt: skip
            finally:
                await client.aclose()
        off = HelperSettings(routable=routable, throughput_bytes_per_hour=0)
        async with running_helper(off) as helper, httpx.AsyncClient() as raw:
            response = await raw.post(f"{helper}/v1/throughput", json=body)
            assert response.status_code == 403 and "no transfers" in response.json()["error"]
    assert origin.ranges == ["bytes=0-19999"] * 3  # only the one test that fitted


def test_hourly_budget_reserves_settles_and_forgets_after_an_hour() -> None:
    now = [0.0]
    budget = HourlyBudget(100, clock=lambda: now[0])
    assert budget.reserve(80) and not budget.reserve(30)
    budget.settle(80, 50)  # read less than reserved: the rest comes back
    assert budget.used() == 50 and budget.reserve(30) and budget.used() == 80
    now[0] = 3600.0  # an hour after the first reservation and its settlement
    assert budget.used() == 0 and budget.reserve(100)
