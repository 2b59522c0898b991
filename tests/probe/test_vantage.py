"""The vantage check against a real local web server: which references answered, and how."""

from __future__ import annotations

import trustme

from measurements.addresses import parse_networks
from probe.config import ControlSettings, LimitSettings, NetworkSettings, Settings
from probe.engine.steps import Measurer
from probe.engine.vantage import check_vantage
from tests.servers.http_server import WebServer


async def test_a_reference_written_as_a_legacy_ipv4_literal_is_not_resolved(
    ca: trustme.CA, ca_bundle: str
) -> None:
    # 2130706433 is 127.0.0.1 to every connector: the reference is an address, not a name
    # for the resolver under test (whose answer the vantage check must not depend on).
    measurer = Measurer(
        Settings(
            network=NetworkSettings(ca_bundle=ca_bundle, routable=parse_networks(["127.0.0.0/8"])),
            control=ControlSettings(doh=()),
            limits=LimitSettings(retry_delay=0.0),
        )
    )
    try:
        async with WebServer(ca, ["ref.test"]) as web:
            check = await check_vantage(measurer, (f"http://2130706433:{web.http_port}/",))
    finally:
        await measurer.aclose()
    (result,) = check.results
    assert check.ok and result.dns is None
    assert result.http is not None and result.http.final.ip == "127.0.0.1"
