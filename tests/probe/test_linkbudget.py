"""probe.engine.linkbudget: metered networks (nmcli's answer read) and the link's share."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from probe.engine.linkbudget import (
    LinkShare,
    default_route_interface,
    metered_reason,
    parse_nmcli_metered,
    pause_needed,
)

NMCLI: list[tuple[str, bool | None]] = [
    ("GENERAL.METERED:yes\n", True),
    ("GENERAL.METERED:yes (guessed)\n", True),
    ("GENERAL.METERED:no\n", False),
    ("GENERAL.METERED:no (guessed)\n", False),
    ("GENERAL.METERED:unknown\n", False),
    ("GENERAL.DEVICE:wlan0\nGENERAL.METERED:yes\n", True),
    ("", None),
    ("Error: Device 'wlan9' not found.\n", None),
]


@pytest.mark.parametrize(("output", "metered"), NMCLI)
def test_nmcli_output_is_read(output: str, metered: bool | None) -> None:
    assert parse_nmcli_metered(output) is metered


ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
down0\t00000000\t0100A8C0\t0002\t0\t0\t1\t00000000\t0\t0\t0
"""


def test_the_default_route_with_the_lowest_metric_names_the_interface() -> None:
    assert default_route_interface(ROUTES) == "eth0"  # down0 is not up; wlan0 costs more
    assert default_route_interface(ROUTES.splitlines()[0]) is None


@pytest.mark.parametrize(("busy", "elapsed", "share", "wait"), [
    (0.0, 0.0, 0.5, 0.0), (1.0, 1.0, 0.5, 1.0), (1.0, 2.0, 0.5, 0.0), (1.0, 1.5, 0.5, 0.5),
    (1.0, 1.0, 1.0, 0.0), (1.0, 1.0, 0.25, 3.0), (2.0, 10.0, 0.5, 0.0),
])  # fmt: skip
def test_the_pause_keeps_transfers_within_the_share(
    busy: float, elapsed: float, share: float, wait: float
) -> None:
    assert pause_needed(busy, elapsed, share) == pytest.approx(wait)


async def test_transfers_at_half_the_link_are_followed_by_as_long_a_pause() -> None:
    now = [100.0]
    link = LinkShare(0.5, clock=lambda: now[0])
    for _ in range(3):
        async with link.transfer():
            now[0] += 0.02  # a transfer of 20 ms
        now[0] += link.pause()  # what the next transfer will wait, as if waited
    assert link.busy == pytest.approx(0.06)
    assert link.pause() == 0.0  # the waits were as long as the transfers
    # Real waiting, on the real clock: a second transfer waits for the first one's time.
    real = LinkShare(0.5)
    loop = asyncio.get_running_loop()
    async with real.transfer():
        await asyncio.sleep(0.05)
    started = loop.time()
    async with real.transfer():
        pass
    assert loop.time() - started >= 0.04 and real.paused > 0


async def test_metered_true_and_false_need_no_network_manager() -> None:
    assert "network.metered = true" in (await metered_reason(True) or "")
    assert await metered_reason(False) is None


def _fake_nmcli(tmp_path: Path, answer: str) -> str:
    """A real executable answering as nmcli does (it sees the arguments it is given)."""
    script = tmp_path / "nmcli"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$*" = "-t -f GENERAL.METERED device show eth0" ] || exit 10\n'
        f"printf '{answer}\\n'\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return str(script)


async def test_auto_asks_network_manager_about_the_default_route(tmp_path: Path) -> None:
    routes = tmp_path / "route"
    routes.write_text(ROUTES, encoding="ascii")
    yes = _fake_nmcli(tmp_path, "GENERAL.METERED:yes (guessed)")
    reason = await metered_reason("auto", nmcli=yes, routes=str(routes))
    assert reason is not None and "metered" in reason and "eth0" in reason
    (tmp_path / "no").mkdir()
    no = _fake_nmcli(tmp_path / "no", "GENERAL.METERED:no")
    assert await metered_reason("auto", nmcli=no, routes=str(routes)) is None
    # No nmcli at all, or no default route: not metered.
    assert await metered_reason("auto", nmcli=str(tmp_path / "absent"), routes=str(routes)) is None
    assert await metered_reason("auto", nmcli=yes, routes=str(tmp_path / "absent")) is None
    assert os.access(yes, os.X_OK)
