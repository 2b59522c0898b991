"""What timed transfers may take of the volunteer's line: nothing on a metered network, and
at most a share of the time on any other.

Metered (``network.metered``): ``true`` or ``false`` as the volunteer says; ``auto`` asks
NetworkManager about the interface of the default route (``nmcli -t -f GENERAL.METERED
device show IFACE``; "yes" and "yes (guessed)" are metered). Without nmcli, or without a
default route, or when nmcli fails, the network is taken as not metered: the byte budgets
(throughput.max_bytes_per_sweep, max_bytes_per_day) still bound what a sweep spends. On a
metered network every throughput test and SNI replay is skipped, and the evidence says why.

The link's share (``throughput.max_link_share``, 0.5 by default): a timed transfer fills the
line while it lasts (that is what it measures), so the volunteer's own traffic is squeezed
meanwhile. The rule: from the start of the sweep's first timed transfer, the time spent in
timed transfers is at most the share of the time gone by. Before each transfer the sweep
waits until that holds again; at 0.5, each transfer is followed (before the next) by a pause
as long as itself, so at the rate it measured the transfers carry at most half of what the
line could carry over the sweep's timed part. At 1 nothing waits. Throughput tests and
replays share one such account, as they share one turn (probe.engine.throughput).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable

NMCLI_SECONDS = 3.0  # nmcli answers from NetworkManager's state: it does not probe
ROUTES = "/proc/net/route"


def parse_nmcli_metered(output: str) -> bool | None:
    """Whether ``nmcli -t -f GENERAL.METERED device show IFACE`` says metered; None when
    the output holds no such line."""
    for line in output.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "GENERAL.METERED":
            # yes, yes (guessed), no, no (guessed), unknown (and translations of none of these:
            # -t output is not localised)
            return value.strip().lower().startswith("yes")
    return None


def default_route_interface(routes: str) -> str | None:
    """The interface of the IPv4 default route with the lowest metric, from /proc/net/route."""
    best: tuple[int, str] | None = None
    for line in routes.splitlines()[1:]:
        parts = line.split()
        # Iface Destination Gateway Flags RefCnt Use Metric Mask ...: 0.0.0.0/0, and up
        if len(parts) < 8 or parts[1] != "00000000" or parts[7] != "00000000":
            continue
        try:
            up, metric = int(parts[3], 16) & 1, int(parts[6])
        except ValueError:
            continue
        if not up:
            continue
        if best is None or metric < best[0]:
            best = (metric, parts[0])
    return best[1] if best else None


def _ask_network_manager(nmcli: str, routes: str) -> str | None:
    """The metered interface's name, or None (blocking: run in a thread)."""
    path = shutil.which(nmcli)
    if path is None:
        return None
    try:
        with open(routes, encoding="ascii", errors="replace") as f:
            iface = default_route_interface(f.read())
    except OSError:
        return None
    if iface is None:
        return None
    try:
        done = subprocess.run(
            [path, "-t", "-f", "GENERAL.METERED", "device", "show", iface],
            capture_output=True, text=True, timeout=NMCLI_SECONDS, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return iface if done.returncode == 0 and parse_nmcli_metered(done.stdout) else None


async def metered_reason(
    setting: bool | str, *, nmcli: str = "nmcli", routes: str = ROUTES
) -> str | None:
    """Why timed tests are skipped on this network (it is metered), or None."""
    if setting is True:
        return "the network is marked metered (network.metered = true): no timed transfers"
    if setting is False:
        return None
    iface = await asyncio.to_thread(_ask_network_manager, nmcli, routes)
    if iface is None:
        return None
    return (
        f"the network is marked metered (NetworkManager says so of {iface}, the default "
        "route's interface; network.metered = auto): no timed transfers"
    )


def pause_needed(busy: float, elapsed: float, share: float) -> float:
    """Seconds to wait so that ``busy`` seconds of transfers are at most ``share`` of the
    time since the first began (``elapsed``, counting the wait)."""
    return max(0.0, busy / share - elapsed)


class LinkShare:
    """The sweep's account of time spent in timed transfers, and the waits it imposes."""

    def __init__(self, share: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.share = share
        self._clock = clock
        self.busy = 0.0  # seconds in timed transfers so far
        self.paused = 0.0  # seconds waited so far
        self._first: float | None = None

    def pause(self) -> float:
        """How long to wait before the next transfer."""
        if self._first is None:
            return 0.0
        return pause_needed(self.busy, self._clock() - self._first, self.share)

    @contextlib.asynccontextmanager
    async def transfer(self) -> AsyncIterator[None]:
        """Wait for the transfer's turn, then count the time it takes."""
        wait = self.pause()
        if wait > 0:
            await asyncio.sleep(wait)
            self.paused += wait
        start = self._clock()
        if self._first is None:
            self._first = start
        try:
            yield
        finally:
            self.busy += self._clock() - start
