"""A whole sweep under blockbuster: no blocking call may run on the event loop.

A synchronous SQLite write, a CA bundle read or a getaddrinfo inside a coroutine stalls every
measurement in flight and skews their timings. blockbuster raises on such calls made from
the loop's thread, so a regression fails here instead of hiding in the numbers.
"""

from __future__ import annotations

from pathlib import Path

import trustme
from blockbuster import blockbuster_ctx

from measurements import trust
from probe.config import load_settings
from probe.engine.sweep import Sweep
from probe.store.database import open_database
from probe.store.writer import AsyncWriter
from targets.model import Endpoint, Service, TargetList
from tests.servers.dns_server import Answer, NXDomain, ScriptedDNSServer
from tests.servers.doh_server import DoHServer
from tests.servers.http_server import WebServer
from tests.servers.tcp_servers import ResetAfterFirstData


async def test_sweep_makes_no_blocking_call(ca: trustme.CA, ca_bundle: str, tmp_path: Path) -> None:
    names = ["ref.test", "ok.test", "nx.test", "reset.test"]
    resolver, truth = ScriptedDNSServer(), ScriptedDNSServer()
    for name in names:
        resolver.set(name, Answer("127.0.0.1"))
        truth.set(name, Answer("127.0.0.1"))
    resolver.set("nx.test", NXDomain())
    async with resolver, DoHServer(ca, truth) as doh, WebServer(ca, names) as web:
        async with ResetAfterFirstData() as reset:
            settings = load_settings(
                {
                    "network.resolver": resolver.address, "network.ca_bundle": ca_bundle,
                    "network.routable": ["127.0.0.0/8"], "control.doh": [doh.url],
                    "control.reference": [f"https://ref.test:{web.https_port}/"],
                    "limits.retry_delay": "0.05", "limits.connect_timeout": "1",
                },
                None,
                environ={},
            )  # fmt: skip
            targets = TargetList(
                (
                    Service("ok", "social", (f"https://ok.test:{web.https_port}/",), ()),
                    Service("nx", "social", (f"https://nx.test:{web.https_port}/",), ()),
                    Service("reset", "social", (f"https://reset.test:{reset.port}/",),
                            (Endpoint("127.0.0.1", web.http_port),)),
                ),
                (),
                "test",
            )  # fmt: skip
            # What `probe run` does before its loop starts; the sweep builds the rest.
            trust.preload_references(ca_bundle)
            writer = AsyncWriter(open_database(str(tmp_path / "r.sqlite")))
            sweep = Sweep(settings, targets, writer)
            try:
                with blockbuster_ctx():
                    result = await sweep.run()
            finally:
                await writer.close()
    verdicts = {(r.service, r.input.startswith("https")): r.verdict.detail for r in result.records}
    assert result.status == "completed"
    assert verdicts == {
        ("ok", True): "ok", ("nx", True): "dns.nxdomain", ("reset", True): "control.failed",
        ("reset", False): "ok",
    }  # fmt: skip
