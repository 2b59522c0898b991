"""Which names a sweep replays: every HTTPS name the budget covers, else a random share."""

from __future__ import annotations

import random

from measurements.observations import ThroughputObservation
from probe.config import load_settings
from probe.engine.replay import ReplayTester, trial_sizes
from probe.engine.steps import Measurer
from probe.engine.throughput import ThroughputTester
from targets.model import Input

KIB = 1024


def _tester(max_bytes_per_sweep: int, seed: int = 1) -> ReplayTester:
    flags = {
        "control.helper": "http://127.0.0.1:9",
        "throughput.max_bytes_per_sweep": max_bytes_per_sweep,
    }
    settings = load_settings(flags, None, environ={})
    measurer = Measurer(settings)
    tester = ThroughputTester(settings.throughput, (), measurer, frozenset())
    return ReplayTester(tester, random.Random(seed))


def _jobs(n: int) -> list[Input]:
    jobs = [Input("s", "social", "url", f"https://n{i}.example/") for i in range(n)]
    # Not replayed: plain HTTP, an address, a bare endpoint; a second input of a name counts once.
    jobs += [Input("s", "social", "url", "http://plain.example/"),
             Input("s", "social", "url", "https://192.0.2.1/"),
             Input("s", "social", "endpoint", "n0.example:443"),
             Input("s", "social", "url", "https://n0.example/other")]  # fmt: skip
    return jobs


def test_every_name_when_the_budget_covers_them() -> None:
    r = _tester(64 << 20)
    r.plan(_jobs(80), reserved=0)
    assert r.hosts == 80 and r.share is not None and len(r.share) == 80


def test_a_random_share_when_it_does_not_and_another_next_sweep() -> None:
    # 10 MiB: two full tests (3 MiB) and the baseline (768 KiB) first, then 256 KiB a name.
    first, second = _tester(10 << 20, seed=1), _tester(10 << 20, seed=2)
    for r in (first, second):
        r.plan(_jobs(80), reserved=0)
    fixed = 2 * 12 * 128 * KIB + 6 * 128 * KIB
    expected = ((10 << 20) - fixed) // (256 * KIB)
    assert first.share is not None and second.share is not None
    assert len(first.share) == len(second.share) == expected < 80
    assert first.share != second.share  # chosen again each sweep: every name comes round


def test_a_throughput_url_is_paid_for_first() -> None:
    r = _tester(10 << 20)
    r.plan(_jobs(80), reserved=9 << 20)
    assert r.share == frozenset()


def _transfer(direction: str, stopped: str, kbps: float) -> ThroughputObservation:
    return ThroughputObservation(
        url=f"replay://198.18.3.2:443/{direction}", ip="198.18.3.2", sni="x.example",
        verified=False, failure=None, operation=None, status=200, connect_ms=1.0, tls_ms=2.0,
        first_byte_ms=1.0, samples=((5000.0, int(kbps * 625)),), bytes=int(kbps * 625),
        duration_ms=5000.0, goodput_kbps=kbps, stopped=stopped, error=None, direction=direction,
    )  # fmt: skip


def test_trials_of_a_slow_name_are_sized_to_end_by_their_bytes() -> None:
    settings = load_settings({}, None, environ={}).throughput  # 128 KiB, 5 s
    # 128 kbit/s for 5 s ended by time: half the time at that rate is 40,000 bytes.
    slow = [_transfer("down", "seconds", 128.0), _transfer("up", "seconds", 8.0)]
    assert trial_sizes(slow, settings) == {"down": 40_000, "up": 16 * KIB}
    # A name whose transfers ended by their bytes keeps the full size (a shorter transfer
    # would time a fast path's slow start), and so does one ended by time but fast.
    whole = [_transfer("down", "bytes", 90_000.0), _transfer("up", "seconds", 10_000.0)]
    assert trial_sizes(whole, settings) == {"down": 128 * KIB, "up": 128 * KIB}
    assert trial_sizes([], settings) == {"down": 128 * KIB, "up": 128 * KIB}
