"""The SNI replay in a sweep: each HTTPS name timed against an innocuous one at the helper.

Nothing depends on a list naming a download (docs/architecture.md, rule 7): for an HTTPS
input found accessible, the probe opens TLS to the control helper's replay listener
(measurements.replay) and times, in ``throughput.trials`` rounds,

    target     a download and an upload, the ClientHello naming the input's host;
    innocuous  the same, naming ``control.innocuous_name``,

the order rotating each round, every transfer ``throughput.replay_bytes`` and
``throughput.replay_seconds`` at most. A policer that reads names (any destination, as real
ones did) slows the first kind only; probe.classify.replay judges them.

A long list is screened first, to stay within the budgets: the innocuous name is timed once
per sweep (``trials`` transfers each way: the baseline), then each name gets one transfer each
way, and only a name at most 1/RATIO of the baseline in a direction gets the full, interleaved
test (probe.classify.replay decides both). So an unthrottled name costs two transfers.

Bounded like the throughput tests, whose turn and budgets it shares (one transfer at a time
in the sweep; every byte, sent or received, counts against the sweep's and the day's
budgets), and once per name per sweep: the first accessible input of a host carries its
replay, later ones say which did. When the budget cannot screen every name, the sweep takes
a random share of them (``plan``), so that over sweeps every name comes round. The helper
announces where its listener is in its health answer, with the certificate's SHA-256 the
probe pins; a helper without one, or one that cannot be reached, means no replay, and the
evidence says why.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from urllib.parse import urlsplit

from measurements.addresses import canonical_address, is_ip
from measurements.observations import ThroughputObservation
from measurements.replay import ReplayRequest, replay
from probe.classify.replay import worth_a_full_test
from probe.config import ThroughputSettings
from probe.engine.steps import Collector, dns_failed
from probe.engine.throughput import ThroughputTester
from targets.model import Input

# (kind, direction) of one round's transfers; rotated each round so none always goes first.
TRANSFERS = (("target", "down"), ("innocuous", "down"), ("target", "up"), ("innocuous", "up"))
# A full test's transfers are sized from the screening rate to end by bytes in this share of
# ``replay_seconds``: one ended by its time leaves what the helper (or the probe) had sent
# queued in the throttle, which then slows the next transfer of the name, and a read ended by
# time stops between two records. Through a 128 kbit/s class with a 32 kB queue, transfers
# ended by time measured 12 kbit/s; ended by bytes, the class's rate.
FILL = 0.5
MIN_TRIAL_BYTES = 16 * 1024  # several sampling intervals even at a few kbit/s


class ReplayTester:
    """Runs a sweep's SNI replays, in the throughput tests' turn and within their budgets."""

    def __init__(self, tester: ThroughputTester, rng: random.Random | None = None) -> None:
        self.tester = tester
        self.measurer = tester.measurer
        self.settings = tester.settings
        self._rng = rng or random.Random()
        self._listener: asyncio.Future[tuple[str, int, str] | str] | None = None
        self._baseline: list[ThroughputObservation] | None = None
        self.replayed: dict[str, str] = {}  # host -> the input that carried its replay
        self.share: frozenset[str] | None = None  # the hosts this sweep's budget covers
        self.hosts = 0  # hosts the list has that a replay could time

    @property
    def transfer_bytes(self) -> int:
        """The most one replay transfer moves."""
        return self.settings.replay_bytes

    @property
    def test_bytes(self) -> int:
        """The most one full replay test may move, both directions."""
        return len(TRANSFERS) * self.settings.trials * self.transfer_bytes

    def wants(self, job: Input) -> bool:
        """Whether the input is an HTTPS URL whose name a replay could time."""
        s = self.settings
        return (
            s.enabled and s.replay and self.measurer.helper is not None
            and job.url is not None and job.url.scheme == "https" and not is_ip(job.host)
        )  # fmt: skip

    def plan(self, jobs: Sequence[Input], reserved: int) -> None:
        """Choose the names this sweep screens: all that the budget covers, else a random share.

        ``reserved`` is what the sweep's throughput URLs may spend first. Beyond the names'
        screening, the budget keeps the baseline and two full tests; a name left out is in
        another sweep's share (the choice is random each sweep, so every name comes round).
        """
        hosts = sorted({j.host for j in jobs if self.wants(j)})
        self.hosts = len(hosts)
        fixed = reserved + 2 * self.test_bytes + self._baseline_bytes
        room = (self.tester.allowance() - fixed) // (2 * self.transfer_bytes)
        if room >= len(hosts):
            self.share = frozenset(hosts)
        else:
            self.share = frozenset(self._rng.sample(hosts, max(0, room)))

    @property
    def _baseline_bytes(self) -> int:
        return 2 * self.settings.trials * self.transfer_bytes

    async def run(self, job: Input, col: Collector) -> str | None:
        """Replay the input's name into ``col``; or say why it was not."""
        host = job.host
        if self.tester.metered is not None:
            return self.tester.metered
        if host in self.replayed:
            return f"{host} was replayed with {self.replayed[host]}"
        if self.share is not None and host not in self.share:
            return (
                f"{host} is not in this sweep's share of the throughput budget "
                f"({len(self.share)} of {self.hosts} names, chosen at random each sweep)"
            )
        self.replayed[host] = job.value
        s = self.settings
        listener = await self._where()
        if isinstance(listener, str):
            col.replay_problem = listener
            return listener
        async with self.tester.lock:
            baseline = await self._baseline_of(listener)
            if self.tester.allowance() < 2 * self.transfer_bytes:
                return (
                    f"the throughput budget is spent: {self.tester.allowance()} bytes left, "
                    f"a replay needs {2 * self.transfer_bytes}"
                )
            screen = [await self._transfer(listener, host, d) for d in ("down", "up")]
            slow = worth_a_full_test(screen, baseline)
            if not slow or self.tester.allowance() < self.test_bytes:
                col.replay, col.replay_innocuous = screen, list(baseline)
                col.replay_screened = True
                return None
            if any(o.stopped == "seconds" for o in screen):
                # What a transfer ended by time left queued drains before the trials time
                # the name again (a queue holds seconds of a throttled rate, not minutes).
                await asyncio.sleep(s.replay_seconds * FILL)
            sizes = {"target": trial_sizes(screen, s), "innocuous": trial_sizes(baseline, s)}
            await self._rounds(host, listener, col, sizes)
        return None

    async def _baseline_of(self, listener: tuple[str, int, str]) -> list[ThroughputObservation]:
        """The innocuous name's transfers, timed once per sweep (in the lock)."""
        if self._baseline is None:
            innocuous = self.measurer.control.innocuous_name
            self._baseline = [
                await self._transfer(listener, innocuous, d)
                for _ in range(self.settings.trials)
                for d in ("down", "up")
            ]
        return self._baseline

    async def _transfer(
        self, listener: tuple[str, int, str], sni: str, direction: str, size: int | None = None
    ) -> ThroughputObservation:
        ip, port, pin = listener
        s = self.settings
        request = ReplayRequest(
            direction, size or s.replay_bytes, s.replay_seconds, s.sample_interval,
            self.measurer.control.helper_token,
        )  # fmt: skip
        # A policed name's handshake queues behind what the last transfer left in the
        # policer's queue (seconds of it at 128 kbit/s): give it a transfer's time more.
        async with self.tester.link.transfer():  # the line's share, with the throughput tests
            obs = await replay(
                ip, port, sni, request, pin_sha256=pin,
                connect_timeout=self.measurer.limits.connect_timeout + s.replay_seconds,
            )  # fmt: skip
        self.tester.spent += obs.bytes
        return obs

    async def _rounds(
        self,
        host: str,
        listener: tuple[str, int, str],
        col: Collector,
        sizes: dict[str, dict[str, int]],
    ) -> None:
        """The full test: ``trials`` rounds of the four transfers, interleaved.

        Each kind's transfers are sized from its own earlier rate (``trial_sizes``): so each
        lasts long enough to time, and ends by its bytes, leaving nothing queued.
        """
        sinks = {"target": col.replay, "innocuous": col.replay_innocuous}
        names = {"target": host, "innocuous": self.measurer.control.innocuous_name}
        for round_ in range(self.settings.trials):
            shift = round_ % len(TRANSFERS)
            for kind, d in TRANSFERS[shift:] + TRANSFERS[:shift]:
                sinks[kind].append(await self._transfer(listener, names[kind], d, sizes[kind][d]))

    async def _where(self) -> tuple[str, int, str] | str:
        """The replay listener's address, port and certificate pin; or why there is none."""
        if self._listener is None:
            self._listener = asyncio.ensure_future(self._find())
        return await asyncio.shield(self._listener)

    async def _find(self) -> tuple[str, int, str] | str:
        helper = self.measurer.helper
        assert helper is not None
        health, problem = await helper.ask_health()
        if health is None:
            return f"the helper's health answer, which says where it replays: {problem}"
        if health.replay_port is None or not health.replay_certificate_sha256:
            return "the helper runs no SNI replay listener (helper.replay_listen)"
        host = (urlsplit(helper.base_url).hostname or "").lower()
        ip = (canonical_address(host) or host) if is_ip(host) else None
        if ip is None:
            obs = await self.measurer.resolve(host)
            ip = None if dns_failed(obs) else obs.addresses[0]
        if ip is None:
            return f"the helper's name {host} did not resolve"
        refused = self.measurer.refusal(ip)
        if refused is not None:
            return f"the helper's replay address: {refused}"
        return ip, health.replay_port, health.replay_certificate_sha256


def trial_sizes(
    earlier: Sequence[ThroughputObservation], settings: ThroughputSettings
) -> dict[str, int]:
    """Bytes per full-test transfer in each direction, from a name's earlier transfers.

    ``replay_bytes`` where the first of them ended by its bytes; otherwise what its rate
    moves in FILL of ``replay_seconds``, so that a trial ends by bytes (MIN_TRIAL_BYTES at
    least). A name whose transfers end by bytes keeps the full size: a shorter one would
    time a fast path's slow start, not its rate.
    """
    sizes = {}
    for d in ("down", "up"):
        obs = next((o for o in earlier if o.direction == d), None)
        size = settings.replay_bytes
        if obs is not None and obs.stopped != "bytes" and obs.goodput_kbps:
            fits = int(obs.goodput_kbps * 1000 / 8 * settings.replay_seconds * FILL)
            size = max(MIN_TRIAL_BYTES, min(size, fits))
        sizes[d] = size
    return sizes
