"""Which names a sweep replays: every HTTPS name the budget covers, else a random share."""

from __future__ import annotations

import random

from probe.config import load_settings
from probe.engine.replay import ReplayTester
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
