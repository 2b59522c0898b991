"""The vantage check against a real local web server: which references answered, and how."""

from __future__ import annotations

import time

import trustme

from measurements import dns
from measurements.addresses import parse_networks
from probe.classify.fingerprints import load_bundled
from probe.config import ControlSettings, LimitSettings, NetworkSettings, Settings
from probe.engine.steps import Measurer
from probe.engine.vantage import check_vantage
from tests.servers.dns_server import Inject, NXDomain, ScriptedDNSServer
from tests.servers.http_server import WebServer
from tests.servers.tcp_servers import TLSServer


def loopback_measurer(ca_bundle: str, resolver: str | None = None) -> Measurer:
    """A measurer for the tests' loopback servers: their CA, 127.0.0.0/8 public, no DoH."""
    return Measurer(
        Settings(
            network=NetworkSettings(
                ca_bundle=ca_bundle, routable=parse_networks(["127.0.0.0/8"]), resolver=resolver
            ),
            control=ControlSettings(doh=()),
            limits=LimitSettings(retry_delay=0.0),
        )
    )


async def test_a_reference_written_as_a_legacy_ipv4_literal_is_not_resolved(
    ca: trustme.CA, ca_bundle: str
) -> None:
    # 2130706433 is 127.0.0.1 to every connector: the reference is an address, not a name
    # for the resolver under test (whose answer the vantage check must not depend on).
    measurer = loopback_measurer(ca_bundle)
    try:
        async with WebServer(ca, ["ref.test"]) as web:
            check = await check_vantage(measurer, (f"http://2130706433:{web.http_port}/",))
    finally:
        await measurer.aclose()
    (result,) = check.results
    assert check.ok and result.dns is None
    assert result.http is not None and result.http.final.ip == "127.0.0.1"


async def test_an_https_reference_s_chain_is_kept_and_matched(
    ca: trustme.CA, ca_bundle: str
) -> None:
    # The reference is an IP literal (no name to resolve); its chain, as the server presents
    # it without SNI, is kept beside the page, and a plain-HTTP reference has none.
    measurer = loopback_measurer(ca_bundle)
    interceptor = trustme.CA(organization_name="Zscaler Root CA")
    try:
        async with WebServer(ca, ["ref.test"]) as web, TLSServer(interceptor, ["x.test"]) as av:
            refs = (f"http://127.0.0.1:{web.http_port}/", f"https://127.0.0.1:{av.port}/")
            check = await check_vantage(measurer, refs)
    finally:
        await measurer.aclose()
    plain, forged = check.results
    assert plain.tls is None and forged.tls is not None and forged.tls.chain
    assert forged.tls.cert_valid is False  # not in the trust store: kept all the same
    seen = check.tls_seen(load_bundled())
    assert [(r.url, r.interception) for r in seen] == [(refs[1], "zscaler.root")]
    assert seen[0].issuer is not None and "Zscaler Root CA" in seen[0].issuer


async def test_reference_lookups_do_not_wait_for_a_second_answer_but_targets_do(
    ca_bundle: str,
) -> None:
    # A reference's lookup is read for its first answer only: an offline vantage (every name
    # NXDOMAIN), retried once, is told in milliseconds, where waiting out the injection
    # window after each of the two answers took at least two windows (0.6 s). The bound
    # leaves a busy machine dozens of times what the check needs.
    async with ScriptedDNSServer() as server:
        server.set("ref.test", NXDomain())
        server.set("social.test", Inject(forged=("10.0.0.1",), genuine=("10.0.0.2",), gap=0.05))
        measurer = loopback_measurer(ca_bundle, server.address)
        try:
            t0 = time.monotonic()
            check = await check_vantage(measurer, ("http://ref.test/",))
            took = time.monotonic() - t0
            target = await measurer.resolve("social.test")
        finally:
            await measurer.aclose()
    assert not check.ok and server.queries["ref.test"] == 2  # the retry is still made
    assert took < 1.5 * dns.WINDOW, took
    # A target's lookup keeps the window: the genuine answer after the forged one is seen.
    assert [r.addresses for r in target.responses] == [("10.0.0.1",), ("10.0.0.2",)]
