"""The control helper: a real helper server measuring real local servers, and its client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import trustme

from measurements.addresses import parse_networks
from probe.helper_client import HelperClient, report_from_json
from probe.servers.helper import HelperSettings, make_app
from tests.servers.dns_server import Answer, ScriptedDNSServer
from tests.servers.http_server import WebServer
from tests.servers.tcp_servers import ClosedPort, TLSServer


@pytest.fixture
async def helper(ca_bundle: str, dns_server: ScriptedDNSServer) -> AsyncIterator[str]:
    from aiohttp import web

    settings = HelperSettings(dns_server.address, ca_bundle, parse_networks(["127.0.0.0/8"]), 2.0)
    runner = web.AppRunner(make_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


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
    ],
)
async def test_helper_refuses_bad_or_unsafe_checks(
    helper: str, body: dict[str, object], status: int
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{helper}/v1/check", json=body)
    assert response.status_code == status and "error" in response.json()


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
