"""Redirect hops keep the per-host limit: many inputs on other hosts that redirect to one
host reach it at most ``per_host`` at a time (probe.engine.scheduler.HostTurns, entered by
measurements.http.fetch around each hop to a host other than the first URL's).

Against a real HTTP server on 127.0.0.1 that counts the requests it holds at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from measurements import http
from probe.engine.scheduler import HostTurns

INPUTS = 6
HOLD_S = 0.3


class Counting:
    """/r redirects to final.test's /hold, which holds each request HOLD_S and counts."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.port = 0

    async def redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": f"http://final.test:{self.port}/hold"})

    async def hold(self, request: web.Request) -> web.Response:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(HOLD_S)
        finally:
            self.now -= 1
        return web.Response(text="<title>final</title>held", content_type="text/html")


@pytest.fixture
async def server() -> AsyncIterator[Counting]:
    counting = Counting()
    app = web.Application()
    app.router.add_get("/r", counting.redirect)
    app.router.add_get("/hold", counting.hold)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    counting.port = runner.addresses[0][1]
    yield counting
    await runner.cleanup()


async def _loopback(_host: str) -> str:
    return "127.0.0.1"


async def _sweep(server: Counting, turns: HostTurns | None) -> list[http.HTTPObservation]:
    return await asyncio.gather(
        *(
            http.fetch(
                f"http://a{i}.test:{server.port}/r",
                "127.0.0.1",
                timeout=10.0,
                resolve=_loopback,
                hop_turn=turns.turn if turns is not None else None,
            )
            for i in range(INPUTS)
        )
    )


@pytest.mark.parametrize("per_host", [1, 2])
async def test_hops_to_one_host_take_turns(server: Counting, per_host: int) -> None:
    turns = HostTurns(per_host)
    observations = await _sweep(server, turns)
    assert server.most == per_host
    assert [len(o.hops) for o in observations] == [2] * INPUTS
    assert all(o.hops[-1].status == 200 for o in observations)
    assert len(turns) == 0  # nobody holds or waits: the table is empty again


async def test_without_turns_every_hop_arrives_at_once(server: Counting) -> None:
    """What the turns prevent (and that the server counts what it holds)."""
    await _sweep(server, None)
    assert server.most == INPUTS


async def test_the_first_urls_host_takes_no_turn(server: Counting) -> None:
    """The input's own host is the scheduler's to bound: a redirect within it waits for none."""
    turns = HostTurns(1)
    # Someone else holds final.test's only turn; waiting for it would hang, not fail.
    async with turns.turn("final.test"), asyncio.timeout(5):
        page = await http.fetch(
            f"http://final.test:{server.port}/r", "127.0.0.1", timeout=10.0,
            resolve=_loopback, hop_turn=turns.turn,
        )  # fmt: skip
    assert [h.status for h in page.hops] == [302, 200]
