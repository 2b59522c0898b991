"""Redirect chains that fail at a later hop, against a loopback world of censors.

The input's URL answers a redirect (http to https, a shortener to another name); the censor
acts on a later hop only. Each such hop is measured as an input of its own and judged by the
same rules, so the input is blocked where the hop is (the hop named in the evidence), and
stays inconclusive where the hop fails for everyone too. A first hop that is blocked by
itself stays what it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trustme

from measurements import trust
from measurements.observations import TLSObservation
from probe.config import load_settings
from probe.engine.sweep import Sweep
from probe.store.database import open_database
from probe.store.writer import AsyncWriter
from targets.model import Service, TargetList
from tests.servers.dns_server import NXDomain
from tests.servers.tcp_servers import ClosedPort, SilentListener, SNIFilter
from tests.servers.world import World, helper_process, running_world

NAMES = [
    "ref.test", "upgrade.test", "short.test", "nxhop.test", "silent.test", "closed.test",
    "warning.rt.ru", "fine.test",
]  # fmt: skip


@pytest.fixture(scope="module")
def world(ca: trustme.CA, ca_bundle: str) -> Iterator[World]:
    with running_world(ca, ca_bundle, NAMES) as w:
        # The resolver under test denies the names; DoH (the truth) resolves them.
        w.name("nxhop.test", resolver=NXDomain())
        w.name("warning.rt.ru", resolver=NXDomain())
        yield w


def _redirect(world: World, host: str, to: str, status: int = 302) -> str:
    """A URL on the world's plain-HTTP server under ``host`` that redirects to ``to``."""
    return f"http://{host}:{world.web.http_port}/redirect?status={status}&to={quote(to, safe='')}"


@pytest.fixture(scope="module")
def inputs(world: World) -> dict[str, str]:
    web = world.web
    sni = world.peer(SNIFilter(web.https_port, {"upgrade.test"}, "reset"))
    silent = world.peer(SilentListener(idle=20.0))
    closed = world.peer(ClosedPort())
    upgraded = f"https://upgrade.test:{sni.port}/"
    return {
        # 301 http -> https; the https hop's ClientHello (its SNI) is reset.
        "upgrade": _redirect(world, "upgrade.test", upgraded, 301),
        # A shortener, to http -> https: the third hop is reset.
        "third": _redirect(world, "short.test", _redirect(world, "upgrade.test", upgraded, 301)),
        # A shortener to a name the resolver under test denies and DoH resolves.
        "nxhop": _redirect(world, "short.test", f"https://nxhop.test:{web.https_port}/"),
        # A later hop that answers no handshake, whatever the SNI: down for everyone.
        "silent": _redirect(world, "short.test", f"https://silent.test:{silent.port}/"),
        # A later hop whose port is closed (for the helper too).
        "closed": _redirect(world, "short.test", f"https://closed.test:{closed.port}/"),
        # The first hop redirects to a known warning page: blocked by itself, whatever the
        # (denied) warning host does.
        "warning": _redirect(world, "fine.test", "http://warning.rt.ru/?site=fine.test"),
        # A healthy chain: nothing to measure beyond it.
        "fine": _redirect(world, "fine.test", f"https://fine.test:{web.https_port}/", 301),
    }


async def _sweep(world: World, tmp: Path, inputs: dict[str, str], **control: str) -> Any:
    reference = f"https://ref.test:{world.web.https_port}/"
    services = tuple(Service(k, "social", (v,), ()) for k, v in inputs.items())
    config = world.write_config(tmp / "probe.toml", reference)
    settings = load_settings(control, str(config), environ={})
    trust.preload(world.ca_bundle)  # what `probe run` does before its loop starts
    writer = AsyncWriter(open_database(str(tmp / "r.sqlite")))
    try:
        result = await Sweep(settings, TargetList(services, (reference,), "test"), writer).run()
    finally:
        await writer.close()
    assert result.status == "completed"
    return {r.service: r for r in result.records}


EXPECTED = {
    "upgrade": ("blocked", "tls", "tls.reset", 2),
    "third": ("blocked", "tls", "tls.reset", 3),
    "nxhop": ("blocked", "dns", "dns.nxdomain", 2),
    "silent": ("inconclusive", None, "control.failed", 2),
    "closed": ("inconclusive", None, "control.failed", 2),
    "warning": ("blocked", "http", "http.redirect", None),
    "fine": ("accessible", None, "ok", None),
}


async def test_a_later_hop_is_judged_as_an_input_of_its_own(
    world: World, inputs: dict[str, str], tmp_path: Path
) -> None:
    records = await _sweep(world, tmp_path, inputs)
    got = {
        k: (r.verdict.verdict, r.verdict.layer, r.verdict.detail, r.verdict.evidence.get("hop"))
        for k, r in records.items()
    }
    assert got == EXPECTED
    upgrade = records["upgrade"].verdict
    assert upgrade.reason.startswith("At hop 2 https://upgrade.test:")
    assert upgrade.evidence["chain"] == [inputs["upgrade"], upgrade.evidence["hop_url"]]
    assert upgrade.evidence["chain_verdict"]["detail"] == "control.failed"
    # The hop's controls are kept: the innocuous SNI completed at the hop's address.
    (hop,) = upgrade.evidence["later_hops"]
    assert hop["controls"]["tls_innocuous"][0]["failure"] is None
    assert hop["controls"]["tls_innocuous"][0]["sni"] == "www.example.com"
    # And the hop's observations are stored beside the input's own.
    tls = [o for o in records["upgrade"].observations if isinstance(o, TLSObservation)]
    assert [o.sni for o in tls] == ["upgrade.test", "upgrade.test"]  # two attempts
    third = records["third"].verdict
    assert len(third.evidence["chain"]) == 3 and third.evidence["hop"] == 3
    assert [h["hop"] for h in third.evidence["later_hops"]] == [3]  # hop 2 redirected fine
    nx = records["nxhop"].verdict
    assert nx.evidence["hop_url"].startswith("https://nxhop.test:")
    assert nx.evidence["later_hops"][0]["controls"]["doh"][0]["addresses"] == ["127.0.0.1"]
    # A blocked first hop stays as it was, though its warning host was denied too.
    warning = records["warning"].verdict
    assert warning.rule == "http.fingerprint"
    assert warning.evidence["later_hops"][0]["detail"] == "dns.nxdomain"
    # A healthy chain asks for nothing more.
    assert "later_hops" not in records["fine"].verdict.evidence


async def test_with_the_helper_a_later_hop_down_for_everyone_is_site_down(
    world: World, inputs: dict[str, str], tmp_path: Path
) -> None:
    chosen = {k: inputs[k] for k in ("upgrade", "nxhop", "silent", "closed")}
    with helper_process(world) as helper:
        records = await _sweep(world, tmp_path, chosen, **{"control.helper": helper})
    got = {k: (r.verdict.verdict, r.verdict.detail) for k, r in records.items()}
    assert got == {
        "upgrade": ("blocked", "tls.reset"),
        "nxhop": ("blocked", "dns.nxdomain"),
        "silent": ("inconclusive", "control.failed"),
        "closed": ("inconclusive", "site.down"),
    }
    closed = records["closed"].verdict
    assert closed.evidence["hop"] == 2
    assert closed.evidence["later_hops"][0]["controls"]["helper"]["tcp_ok"] is False
