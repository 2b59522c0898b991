"""The control helper: a real helper server measuring real local servers, and its client."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import trustme

from measurements.addresses import parse_networks
from probe.helper.client import HelperClient
from probe.helper.limits import HourlyBudget
from probe.helper.protocol import CheckReport, ProtocolError, ThroughputReport
from probe.helper.server import BadRequest, HelperSettings, parse_throughput
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
    # The one validator (probe.helper.protocol) refuses a wrong field outright, naming it,
    # where the hand checks it replaced read it as absent.
    with pytest.raises(ProtocolError, match=r"^report\.version: "):
        CheckReport.from_json({"version": 2, "addresses": [], "tcp_ok": True})
    for key, bad in [("tcp_ok", "yes"), ("status", True), ("addresses", ["127.0.0.1", 3])]:
        body = {"version": 1, "addresses": [], key: bad}
        with pytest.raises(ProtocolError, match=rf"^report\.{key}"):
            CheckReport.from_json(body)


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

    def parse(transfer: object) -> object:
        return ThroughputReport.from_json({"version": 1, "transfers": [transfer]})

    report = parse(good)
    assert isinstance(report, ThroughputReport)
    (obs,) = report.transfers
    assert obs.samples == ((100.0, 5000), (200.0, 9000))
    assert (obs.bytes, obs.first_byte_ms, obs.stopped) == (9000, 3, "seconds")
    for key, bad in [("bytes", "9000"), ("samples", [[1.0]]), ("samples", [[1.0, 2.5]]),
                     ("status", True), ("verified", None), ("goodput_kbps", "fast"),
                     ("sni", 5), ("url", None)]:  # fmt: skip
        with pytest.raises(ProtocolError, match=rf"^throughput_report\.transfers\[0\]\.{key}"):
            parse({**good, key: bad})
    with pytest.raises(ProtocolError, match=r"transfers\[0\]: expected a JSON object"):
        parse([good])


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


# ------------------------------------------------------------------ under load and abuse


async def _raw(
    url: str, path: str, body: bytes, headers: bytes = b"Content-Type: application/json\r\n"
) -> tuple[int, object]:
    """POST bytes as given (headers that are not UTF-8 included); the status and JSON body."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: helper\r\nConnection: close\r\n%sContent-Length: %d"
            b"\r\n\r\n%s" % (path.encode(), headers, len(body), body)
        )
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(rest)


_T = b'{"url": %s, "address": "127.0.0.1", "max_bytes": %s, "max_seconds": %s, "trials": %s}'
_NOT_JSON = b"Content-Type: text/plain\r\n"


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v1/check", b"[" * 2000 + b"]" * 2000, None),  # nested 2,000 deep
        ("/v1/check", b'{"input": ' + b"[" * 1900 + b"]" * 1900 + b', "address": "x"}', None),
        ("/v1/check", b'{"input": "\xff\xfe.test:80", "address": "127.0.0.1"}', None),  # not UTF-8
        ("/v1/check", b"\xc3\x28", None),
        ("/v1/check", b"[]", None),
        ("/v1/check", b"42", None),
        ("/v1/check", b"null", None),
        ("/v1/check", b'{"input": null, "address": null}', None),
        ("/v1/check", b'{"input": "x.test:80", "address": ' + b"9" * 3000 + b"}", None),
        ("/v1/check", b'{"input": NaN, "address": Infinity}', None),
        ("/v1/check", b'{"input": "x.test:80"}', None),  # a field missing
        ("/v1/check", b'{"input": "x.test:80", "address": "127.0.0.1", "more": 1}', None),
        ("/v1/check", b"", None),
        ("/v1/check", b'{"input": "x.test:80", "address": "127.0.0.1"}', _NOT_JSON),
        ("/v1/check", b'{"input": "x.test:80", "address": "127.0.0.1"}', b""),  # no type
        ("/v1/check", b'{"input": "\\ud800.test:80", "address": "127.0.0.1"}', None),
        ("/v1/check", b'{"input": "https://x.test:abc/", "address": "127.0.0.1"}', None),
        ("/v1/check", b'{"input": "https://[::1/", "address": "127.0.0.1"}', None),
        ("/v1/check", b'{"input": "x.test:80", "address": "127.0.0.1\\u0000"}', None),
        ("/v1/throughput", _T % (b'"https://x.test/"', b"1e999", b"1", b"1"), None),
        ("/v1/throughput", _T % (b'"https://x.test/"', b"9" * 3000, b"1", b"1"), None),
        ("/v1/throughput", _T % (b'"https://x.test/"', b"1", b"NaN", b"1"), None),
        ("/v1/throughput", _T % (b'"https://x.test/"', b"1", b"Infinity", b"1"), None),
        ("/v1/throughput", _T % (b'"https://x.test/"', b"1", b"1", b"-Infinity"), None),
        ("/v1/throughput", _T % (b'"https://x.test/"', b"1", b"1", b"1.0"), None),
        ("/v1/throughput", _T % (b'"https://x.test/"', b"null", b"null", b"null"), None),
        ("/v1/throughput", _T % (b'["https://x.test/"]', b"1", b"1", b"1"), None),
        ("/v1/throughput", b"[" * 2000 + b"]" * 2000, None),
        ("/v1/throughput", b'{"url": "https://x.test/"}', _NOT_JSON),
        ("/v1/check", b'{"input": "x.test:80", "address": "127.0.0.1"}',
         b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"),  # not gzip
    ],
)  # fmt: skip
async def test_every_malformed_request_gets_a_json_400(
    helper: str, path: str, body: bytes, headers: bytes | None
) -> None:
    args = (helper, path, body) if headers is None else (helper, path, body, headers)
    status, answer = await _raw(*args)
    assert status == 400 and isinstance(answer, dict) and isinstance(answer["error"], str)


@pytest.mark.parametrize(
    "authorization",
    [b"", b"Authorization: Bearer \xff\xfe\r\n", b"Authorization: \xc3\xa9\r\n",
     b"Authorization: Bearer s3cre\r\n", b"Authorization: Bearer s3cret\xff\r\n"],
)  # fmt: skip
async def test_a_missing_or_mangled_token_gets_a_json_401(authorization: bytes) -> None:
    settings = HelperSettings(routable=parse_networks(["127.0.0.0/8"]), token="s3cret")
    async with running_helper(settings) as url:
        body = b'{"input": "x.test:1", "address": "127.0.0.1"}'
        headers = b"Content-Type: application/json\r\n" + authorization
        status, answer = await _raw(url, "/v1/check", body, headers)
        assert status == 401 and isinstance(answer, dict) and "token" in answer["error"]
        status, _ = await _raw(url, "/v1/check", body, headers + b"X: \xff\r\n")
        assert status == 401
        good = b"Content-Type: application/json\r\nAuthorization: Bearer s3cret\r\n"
        status, answer = await _raw(url, "/v1/check", body, good)
        assert status == 200 and isinstance(answer, dict) and answer["tcp_ok"] is False


async def test_the_helpers_other_refusals_are_json_too(helper: str) -> None:
    async def too_long() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse
        for _ in range(5):
            yield b" " * 1000

    async with httpx.AsyncClient() as client:
        answers = [
            await client.get(f"{helper}/v1/check"),
            await client.post(f"{helper}/v1/nowhere", json={}),
            await client.post(
                f"{helper}/v1/check", content=too_long(),
                headers={"Content-Type": "application/json"},
            ),
        ]  # fmt: skip
    assert [a.status_code for a in answers] == [405, 404, 413]
    assert all(isinstance(a.json()["error"], str) for a in answers)


async def test_queued_transfers_never_hold_up_a_check(ca: trustme.CA, ca_bundle: str) -> None:
    # One slot for checks and four transfers queued behind a slow one: the checks are answered
    # while the first transfer still runs (it lasts 3 s; a check of a closed port, a moment).
    # They used to wait for the slot the transfers took while waiting for their turn.
    settings = HelperSettings(
        ca_bundle=ca_bundle, routable=parse_networks(["127.0.0.0/8"]), concurrency=1
    )
    async with (
        ByteServer(ca, ["cdn.test"]) as origin,
        Pacer(origin.port, rate=20_000) as slow,
        ClosedPort() as closed,
        running_helper(settings) as url,
        httpx.AsyncClient(timeout=60) as raw,
    ):
        body = {"url": f"https://cdn.test:{slow.port}/bytes/1000000", "address": "127.0.0.1",
                "max_bytes": 1_000_000, "max_seconds": 3, "trials": 1}  # fmt: skip
        transfers = [
            asyncio.create_task(raw.post(f"{url}/v1/throughput", json=body)) for _ in range(4)
        ]
        try:
            for _ in range(500):  # until the first transfer is under way (10 s at most)
                if slow.connections:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # and the others are in the helper's queue
            check = {"input": f"127.0.0.1:{closed.port}", "address": "127.0.0.1"}
            answers = [await raw.post(f"{url}/v1/check", json=check) for _ in range(3)]
            assert [a.status_code for a in answers] == [200] * 3
            assert all(a.json()["tcp_ok"] is False for a in answers)
            assert not any(t.done() for t in transfers)  # the first transfer still runs
        finally:
            for t in transfers:
                t.cancel()
            await asyncio.gather(*transfers, return_exceptions=True)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the helper sent before it closed the connection (fails if it has not closed)."""
    got = b""
    async with asyncio.timeout(seconds):
        try:
            while data := await reader.read(4096):
                got += data
        except ConnectionError:
            pass
    return got


async def test_slow_clients_are_let_go_after_the_read_timeout() -> None:
    # 0.5 s to send headers, and again a body: a client silent from the start, one sending
    # its headers a byte at a time and one trickling its body are all closed well within
    # ten times that (a slow-loris used to hold a connection for an hour, aiohttp's default).
    settings = HelperSettings(routable=parse_networks(["127.0.0.0/8"]), read_timeout=0.5)
    async with running_helper(settings) as url:
        port = int(url.rsplit(":", 1)[1])
        request = (
            b"POST /v1/check HTTP/1.1\r\nHost: helper\r\nContent-Type: application/json\r\n"
            b"Content-Length: 60\r\n\r\n"
        )

        async def trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
            with contextlib.suppress(ConnectionError):
                for i in range(len(data)):
                    writer.write(data[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(0.1)

        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        senders = [
            asyncio.create_task(trickle(conns[1][1], request)),
            asyncio.create_task(trickle(conns[2][1], b'{"input": "x.test:80", ' * 3)),
        ]
        conns[2][1].write(request)  # the headers at once; then the body, slowly
        try:
            silent, slow_headers, slow_body = [await _closed_within(r, 5.0) for r, _ in conns]
        finally:
            for task in senders:
                task.cancel()
            for _, writer in conns:
                writer.close()
        assert silent == b"" and slow_headers == b""
        head, _, rest = slow_body.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and "slow" in json.loads(rest)["error"]


async def test_a_client_over_its_connection_cap_is_turned_away_and_others_served() -> None:
    # Four connections from 127.0.0.2 fill its cap: a fifth is answered 429 and closed, while
    # a check from 127.0.0.1 goes through; when one of the four closes, 127.0.0.2 is let in.
    settings = HelperSettings(
        routable=parse_networks(["127.0.0.0/8"]), read_timeout=30.0, per_client_connections=4
    )
    async with running_helper(settings) as url, ClosedPort() as closed:
        port = int(url.rsplit(":", 1)[1])
        held = [
            await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
            for _ in range(4)
        ]
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.2", 0)
            )
            refused = await _closed_within(reader, 5.0)
            writer.close()
            head, _, rest = refused.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 429") and "too many" in json.loads(rest)["error"]
            client = HelperClient(url, None, 5.0)
            try:
                report = await client.check(f"127.0.0.1:{closed.port}", "127.0.0.1")
            finally:
                await client.aclose()
            assert report is not None and report.tcp_ok is False
            held.pop()[1].close()
            transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
            async with httpx.AsyncClient(transport=transport) as other:
                async with asyncio.timeout(10):
                    while True:  # until the helper has seen the close
                        with contextlib.suppress(httpx.HTTPError):
                            if (await other.get(f"{url}/v1/health")).status_code == 200:
                                break
                        await asyncio.sleep(0.05)
        finally:
            for _, w in held:
                w.close()
