"""Rule 7 as tables: the statistics on synthetic sample series, then the decision itself.

No network: each transfer is a ThroughputObservation built from a rate profile (bytes per
second over time), sampled every 100 ms as measurements.throughput samples.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
from collections.abc import Callable
from typing import Any

import pytest

from measurements.observations import (
    DNSObservation,
    HTTPHop,
    HTTPObservation,
    HTTPTimings,
    ThroughputObservation,
    TLSObservation,
)
from probe.classify import classify
from probe.classify.evidence import Controls, InputEvidence, PastRate
from probe.classify.fingerprints import load_bundled
from probe.classify.rates import (
    _q_ks,
    change_point,
    effect,
    interval_rates,
    ks_2samp,
    points,
    rate_from,
    rate_kbps,
    stability,
)
from probe.classify.throttle import FLAT_CV, classify_throughput
from probe.classify.trials import RATIO, analyse, compare

HOST = "www.example.test"
IP = "93.184.215.14"
FAST = 2_000_000  # bytes/s: 16 Mbit/s
SLOW = 16_000  # bytes/s: 128 kbit/s, as Kazakhstan's and Russia's throttles ran

# (seconds since the body began, bytes so far) -> bytes/s
Profile = Callable[[float, float], float]


def flat(rate: float) -> Profile:
    return lambda t, got: rate


def delayed(after_bytes: int, fast: float, slow: float) -> Profile:
    """A byte-count trigger: ``fast`` for the first ``after_bytes``, then ``slow``."""
    return lambda t, got: fast if got < after_bytes else slow


def transfer(
    profile: Profile,
    seconds: float = 3.0,
    *,
    every: float = 0.1,
    max_bytes: int = 1 << 30,
    noise: float = 0.0,
    seed: int = 0,
    status: int = 206,
    failure: str | None = None,
    operation: str | None = None,
    connect_ms: float = 5.0,
    sni: str = HOST,
) -> ThroughputObservation:
    """Integrate ``profile`` in 1 ms steps and sample it as the download primitive does."""
    rnd = random.Random(seed)
    first_byte = 50.0
    samples: list[tuple[float, int]] = []
    total = 0.0
    step = 0.001
    t = 0.0
    next_sample = every
    while t < seconds and total < max_bytes:
        total = min(
            max_bytes, total + profile(t, total) * step * (1 + noise * (rnd.random() * 2 - 1))
        )
        t += step
        if t >= next_sample - 1e-9:
            samples.append((round(first_byte + t * 1000, 1), int(total)))
            next_sample += every
    end = first_byte + t * 1000
    if not samples or samples[-1][0] < round(end, 1):
        samples.append((round(end, 1), int(total)))
    got = int(total)
    return ThroughputObservation(
        f"https://{HOST}/big.bin", IP, sni, sni == HOST, failure, operation, status, connect_ms,
        5.0, first_byte, tuple(samples), got, end, got * 8 / (end - first_byte) if got else None,
        "bytes" if got >= max_bytes else "seconds",
    )  # fmt: skip


def pts(obs: ThroughputObservation) -> list[tuple[float, int]]:
    assert obs.first_byte_ms is not None
    return points(obs.samples, obs.first_byte_ms)


# ------------------------------------------------------------------ the KS test


@pytest.mark.parametrize(
    ("a", "b", "d", "p"),
    [
        ([1, 2, 3], [2, 3, 4], 1 / 3, None),
        ([1, 2, 3], [1, 2, 3], 0.0, 1.0),
        ([5.0] * 10, [5.0] * 10, 0.0, 1.0),  # ties throughout
        ([1.0] * 10, [2.0] * 10, 1.0, 1.9e-5),
        # Three trials against three can never reach p < 0.01: why the test pools the
        # per-interval rates of every transfer rather than one goodput per trial.
        ([1, 2, 3], [10, 20, 30], 1.0, 0.0327),
        ([], [1.0], 0.0, 1.0),
    ],
)
def test_ks_2samp(a: list[float], b: list[float], d: float, p: float | None) -> None:
    got_d, got_p = ks_2samp(a, b)
    assert got_d == pytest.approx(d)
    if p is not None:
        assert got_p == pytest.approx(p, rel=0.05)
    assert ks_2samp(b, a) == (got_d, got_p)  # symmetric


@pytest.mark.parametrize(
    ("lam", "q"),
    [(0.1, 1.0), (0.5, 0.9639), (1.0, 0.2700), (1.36, 0.0494), (1.63, 0.0098), (3.0, 3.05e-8)],
)
def test_kolmogorov_survival_function(lam: float, q: float) -> None:
    assert _q_ks(lam) == pytest.approx(q, rel=0.01, abs=1e-4)


def test_effect_is_relative_to_the_faster_median() -> None:
    assert effect([10, 10, 10], [100, 100, 100]) == pytest.approx(0.9)
    assert effect([60, 60], [100, 100]) == pytest.approx(0.4)
    assert effect([100], [50]) == pytest.approx(-1.0)
    assert effect([], [1]) == 0.0


# ------------------------------------------------------------------ change points


def _offset(obs: ThroughputObservation) -> int | None:
    found = change_point(pts(obs))
    return None if found is None else found.at_bytes


@pytest.mark.parametrize(
    ("name", "obs", "low", "high"),
    [
        ("trigger after 100 KB", transfer(delayed(100_000, FAST, SLOW)), 100_000, 101_600),
        ("trigger after 300 KB", transfer(delayed(300_000, FAST, SLOW)), 300_000, 301_600),
        ("trigger with noise", transfer(delayed(200_000, FAST, SLOW), noise=0.5), 200_000, 202_400),
        ("the fast part spans three samples", transfer(delayed(300_000, 1_000_000, SLOW)), 299_000, 301_600),
    ],
)  # fmt: skip
def test_change_point_found_where_the_rate_fell(
    name: str, obs: ThroughputObservation, low: int, high: int
) -> None:
    found = _offset(obs)
    assert found is not None and low <= found <= high, name


@pytest.mark.parametrize(
    ("name", "obs"),
    [
        ("flat fast", transfer(flat(FAST))),
        ("flat slow", transfer(flat(SLOW))),
        ("flat slow with noise", transfer(flat(SLOW), noise=0.8)),
        ("a first burst below 32 KiB is a first window, not a trigger", transfer(delayed(20_000, FAST, SLOW))),
        ("a drop by 3 is not steep enough", transfer(delayed(100_000, 3 * SLOW, SLOW))),
        ("a rate that recovers is not a change", transfer(lambda t, got: SLOW if 0.5 < t < 1.5 else FAST)),
        ("slow start, then faster", transfer(lambda t, got: SLOW if t < 0.5 else FAST)),
        ("too short after the drop", transfer(delayed(100_000, FAST, SLOW), seconds=0.4)),
    ],
)  # fmt: skip
def test_no_change_point(name: str, obs: ThroughputObservation) -> None:
    assert _offset(obs) is None, name


def test_change_point_prefers_the_sample_where_the_fast_part_ended() -> None:
    # The fast part was still arriving at the first sample (as on a loaded machine): the best
    # two-segment fit splits at the second, where the rate actually fell.
    samples = [(0.0, 0), (20.0, 78_848), (40.0, 100_352)]
    samples += [(40.0 + 20 * i, 100_352 + 2048 * i) for i in range(1, 28)]
    found = change_point(samples)
    assert found is not None and found.at_bytes == 100_352
    assert found.after_kbps == pytest.approx(2048 * 8 / 20)


def test_change_point_past_a_stall_within_the_fast_part() -> None:
    # Seen in CI: the fast part stalled for a sample (78848 twice) and then 23 KiB more came
    # at once. A least-squares split chose the first 78848 and counted those 23 KiB in the
    # slow rate (+55%); the knee is where the fast part really ended.
    samples = [(9.1, 0), (31.3, 78_848), (50.6, 78_848), (70.7, 102_400)]
    samples += [(70.7 + 20 * i, 102_400 + 2000 * i) for i in range(1, 17)]
    found = change_point(samples)
    assert found is not None and found.at_bytes == 102_400
    assert found.after_kbps == pytest.approx(2000 * 8 / 20)


# ------------------------------------------------------------------ stability


def test_stability_flat_and_wandering() -> None:
    policed = stability(pts(transfer(flat(SLOW), seconds=5, noise=0.3)))
    assert policed is not None and policed < 0.1
    congested = stability(pts(transfer(lambda t, got: SLOW * (1.6 + math.sin(3 * t)), seconds=5)))
    assert congested is not None and congested > FLAT_CV
    assert stability(pts(transfer(flat(SLOW), seconds=0.3))) is None  # too short to tell


def _records(
    phase_ms: float, rate: float = 125_000, size: int = 16_384, n: int = 8
) -> list[tuple[float, int]]:
    """A transfer read in whole TLS records arriving at ``rate`` bytes/s, sampled every
    100 ms from the headers on (t=0), and once more at the exact end of the read."""
    arrivals = [phase_ms + i * size / rate * 1000 for i in range(1, n + 1)]
    pts: list[tuple[float, int]] = [(0.0, 0)]
    t = 100.0
    while t < arrivals[-1]:
        pts.append((t, size * sum(a <= t for a in arrivals)))
        t += 100.0
    return [*pts, (arrivals[-1], size * n)]


def test_rate_from_reads_quantized_transfers_without_bias() -> None:
    # 1 Mbit/s in 16 KiB records (the lab's slow link). Timing from the first sample that saw
    # bytes read about 8% high on average; from the middle of its interval, no bias.
    phases = [i * 6.5 for i in range(20)]
    runs = [_records(p) for p in phases]
    firsts = [next(i for i, q in enumerate(pts) if q[1] > 0) for pts in runs]
    new = [rate_from(pts, i) for pts, i in zip(runs, firsts, strict=True)]
    old = [rate_kbps(pts[i], pts[-1]) for pts, i in zip(runs, firsts, strict=True)]
    assert all(r is not None for r in new)
    assert statistics.fmean(r for r in new if r is not None) == pytest.approx(1000, rel=0.02)
    assert statistics.fmean(old) > 1050
    # After a stall: the span starts at the arrival before (mid-interval), not at the sample.
    assert rate_from([(0.0, 0), (100.0, 1000), (200.0, 1000), (300.0, 2000)], 2) == 8000 / 250
    assert rate_from([(0.0, 0), (100.0, 1000)], 1) is None  # nothing after it


def test_a_transfer_too_quick_to_sample_keeps_its_goodput() -> None:
    # 300 KB on loopback with 20 ms samples (seen in CI): 271 KB by the first sample, a stall,
    # the rest at the end. From the first sample on it read 6.3 Mbit/s; it ran at ~49.
    fast = dataclasses.replace(
        transfer(flat(FAST)), first_byte_ms=11.48, duration_ms=60.6, bytes=300_000,
        samples=((36.7, 271_360), (55.9, 271_360), (60.6, 300_000)),
        goodput_kbps=300_000 * 8 / (60.6 - 11.48),
    )  # fmt: skip
    assert rate_from(pts(fast), 1) == pytest.approx(6277, rel=0.01)  # what it used to count
    assert analyse("reference", [fast]).rates == (pytest.approx(48_860, rel=0.01),)
    # A slow transfer sampled long enough is still timed from its first sample on.
    slow = transfer(flat(SLOW), seconds=1.0)
    assert analyse("target", [slow]).rates[0] == pytest.approx(SLOW * 8 / 1000, rel=0.02)


def test_a_sample_after_the_last_byte_is_no_interval_of_the_transfer() -> None:
    # Seen in CI: the sampler ticked between a loopback reference's last chunk and the end of
    # its read, 0.3 ms later, so the read ended with 0 bytes in an interval, a "rate" of 0
    # kbit/s among the fast kind's few intervals; the KS test then missed a 40-fold throttle
    # (D 0.75, p 0.0135) one sweep in five.
    def quick(first: float, samples: tuple[tuple[float, int], ...]) -> ThroughputObservation:
        return dataclasses.replace(
            transfer(flat(FAST)), first_byte_ms=first, samples=samples, bytes=200_000,
            duration_ms=samples[-1][0], goodput_kbps=200_000 * 8 / (samples[-1][0] - first),
            stopped="end",
        )  # fmt: skip

    reference = analyse("reference", [
        quick(11.0, ((35.4, 200_000),)), quick(10.0, ((34.8, 200_000), (35.1, 200_000))),
        quick(15.9, ((36.8, 200_000),)),
    ])  # fmt: skip
    assert 0.0 not in reference.interval_rates
    target = analyse("target", trials(flat(200_000), seconds=0.4, every=0.02))
    vs = compare(target, reference)
    assert vs is not None and vs.ks_d == 1.0 and vs.slower
    # A read its time budget ended keeps a stall at its end: the network sent nothing.
    stalled = dataclasses.replace(
        transfer(flat(SLOW), seconds=1.0), samples=((150.0, 1600), (250.0, 3200), (350.0, 3200),
        (450.0, 3200), (550.0, 3200)), stopped="seconds",
    )  # fmt: skip
    assert analyse("target", [stalled]).interval_rates[-3:] == (0.0, 0.0, 0.0)


def test_interval_rates_are_kbit_per_second() -> None:
    assert interval_rates([(0.0, 0), (100.0, 1000), (200.0, 3000)]) == [80.0, 160.0]


# ------------------------------------------------------------------ the decision


def trials(profile: Profile, n: int = 3, **kw: object) -> tuple[ThroughputObservation, ...]:
    return tuple(transfer(profile, seed=i, noise=0.3, **kw) for i in range(n))  # type: ignore[arg-type]


def innocuous(profile: Profile, n: int = 3, **kw: object) -> tuple[ThroughputObservation, ...]:
    return trials(profile, n, sni="www.example.com", **kw)


def accessible_evidence(target: tuple[ThroughputObservation, ...]) -> InputEvidence:
    dns = DNSObservation(HOST, "A", "udp", "192.0.2.53:53", None, "NOERROR", (IP,), (), 3.0)
    tls = TLSObservation(IP, 443, HOST, None, None, 1.0, 2.0, "TLSv1.3", None, (), True, None, 3.0)
    hop = HTTPHop(
        f"https://{HOST}/big.bin", IP, None, None, 200, (), None, None, 1000, "00", b"", True,
        "TLSv1.3", None, HTTPTimings(),
    )  # fmt: skip
    return InputEvidence(
        "url", f"https://{HOST}/big.bin", HOST, "https", dns=(dns,), tls=(tls,),
        http=(HTTPObservation(hop.url, (hop,), 10.0),), throughput=target,
    )  # fmt: skip


def past(kbps: float, verdict: str = "accessible", address: str = IP) -> PastRate:
    detail = "throttle.ip" if verdict == "throttled" else "ok"
    return PastRate("2026-11-20T18:00:00+00:00", kbps * 8 / 1000, verdict, detail, address)


# Profiles are in bytes per second; past rates in kbit/s, as stored.
HELPER_FAST: dict[str, Any] = {"throughput_helper": trials(flat(FAST))}
HISTORY_FAST: dict[str, Any] = {"throughput_history": (past(FAST), past(FAST), past(SLOW))}

CASES = [
    # name, target, innocuous SNI, reference, (verdict, layer, detail, rule)
    ("SNI throttle", trials(flat(SLOW)), innocuous(flat(FAST)), trials(flat(FAST)),
     ("throttled", "tls", "throttle.sni", "throttle.sni")),
    ("IP throttle: the helper got the address fast", trials(flat(SLOW)), innocuous(flat(SLOW)),
     trials(flat(FAST)), ("throttled", "tcp", "throttle.ip", "throttle.ip"), HELPER_FAST),
    ("IP throttle: the address was fast here before", trials(flat(SLOW)), innocuous(flat(SLOW)),
     trials(flat(FAST)), ("throttled", "tcp", "throttle.ip", "throttle.ip"), HISTORY_FAST),
    ("the helper's transfers failed: history decides", trials(flat(SLOW)), innocuous(flat(SLOW)),
     trials(flat(FAST)), ("throttled", "tcp", "throttle.ip", "throttle.ip"),
     {"throughput_helper": trials(flat(FAST), status=None, failure="connection_reset",
                                  operation="connect"), **HISTORY_FAST}),
    ("every connection slow, nothing shows the address fast", trials(flat(SLOW)),
     innocuous(flat(SLOW)), trials(flat(FAST)), ("accessible", None, "ok", "throughput.slow_address")),
    ("a server slow for everyone: the helper got it as slow", trials(flat(SLOW)),
     innocuous(flat(SLOW)), trials(flat(FAST)), ("accessible", None, "ok", "throughput.slow_everywhere"),
     {"throughput_helper": trials(flat(SLOW))}),
    ("the helper outweighs history", trials(flat(SLOW)), innocuous(flat(SLOW)), trials(flat(FAST)),
     ("accessible", None, "ok", "throughput.slow_everywhere"),
     {"throughput_helper": trials(flat(SLOW)), **HISTORY_FAST}),
    ("fast here only once before", trials(flat(SLOW)), innocuous(flat(SLOW)), trials(flat(FAST)),
     ("accessible", None, "ok", "throughput.slow_address"),
     {"throughput_history": (past(FAST), past(SLOW), past(SLOW))}),
    ("fast before at another address (a CDN moved the input)", trials(flat(SLOW)),
     innocuous(flat(SLOW)), trials(flat(FAST)), ("accessible", None, "ok", "throughput.slow_address"),
     {"throughput_history": (past(FAST, address="192.0.2.99"), past(FAST, address="192.0.2.99"))}),
    ("a throttle in place for weeks is not its own baseline", trials(flat(SLOW)),
     innocuous(flat(SLOW)), trials(flat(FAST)), ("accessible", None, "ok", "throughput.slow_address"),
     {"throughput_history": (past(SLOW, "throttled"), past(SLOW, "throttled"), past(FAST))}),
    ("delayed SNI throttle", trials(delayed(150_000, FAST, SLOW)), innocuous(flat(FAST)),
     trials(flat(FAST)), ("throttled", "tls", "throttle.sni", "throttle.sni")),
    ("a slow link slows the references too", trials(flat(SLOW)), innocuous(flat(SLOW)),
     trials(flat(SLOW)), ("accessible", None, "ok", "throughput.not_slower")),
    ("a slow link, and the target a bit slower still", trials(flat(SLOW / 2)),
     innocuous(flat(SLOW)), trials(flat(SLOW)), ("accessible", None, "ok", "throughput.not_slower")),
    ("nothing slow", trials(flat(FAST)), innocuous(flat(FAST)), trials(flat(FAST)),
     ("accessible", None, "ok", "throughput.not_slower")),
    ("slow only once in three: not repeatable",
     (transfer(flat(SLOW)), transfer(flat(FAST)), transfer(flat(FAST))),
     innocuous(flat(FAST)), trials(flat(FAST)), ("accessible", None, "ok", "throughput.not_slower")),
    ("two slow, one fast: every trial must be slow",
     (transfer(flat(SLOW)), transfer(flat(SLOW), seed=1), transfer(flat(FAST))),
     innocuous(flat(FAST)), trials(flat(FAST)), ("accessible", None, "ok", "throughput.not_slower")),
    ("a ratio of 1/3 is not enough", trials(flat(FAST / 3)), innocuous(flat(FAST)),
     trials(flat(FAST)), ("accessible", None, "ok", "throughput.not_slower")),
    ("only two target trials", trials(flat(SLOW), 2), innocuous(flat(FAST)), trials(flat(FAST)),
     ("accessible", None, "ok", "throughput.incomplete")),
    ("target trials failed before the body",
     trials(flat(SLOW), status=None, failure="connection_reset", operation="tls_handshake"),
     innocuous(flat(FAST)), trials(flat(FAST)), ("accessible", None, "ok", "throughput.incomplete")),
    ("a reset midway still timed what came before",
     trials(flat(SLOW), failure="connection_reset", operation="http_body"), innocuous(flat(FAST)),
     trials(flat(FAST)), ("throttled", "tls", "throttle.sni", "throttle.sni")),
    ("no reference", trials(flat(SLOW)), innocuous(flat(FAST)), (),
     ("accessible", None, "ok", "throughput.no_reference")),
    ("the innocuous SNI is refused (421)", trials(flat(SLOW)), innocuous(flat(FAST), status=421),
     trials(flat(FAST)), ("accessible", None, "ok", "throughput.no_innocuous")),
    ("innocuous in between", trials(flat(FAST / 10)), innocuous(flat(FAST / 3)), trials(flat(FAST)),
     ("accessible", None, "ok", "throughput.ambiguous")),
    # A far server is slower than a near reference by its round trip, censor or not.
    ("far server, near reference", trials(flat(SLOW), connect_ms=300), innocuous(flat(SLOW), connect_ms=300),
     trials(flat(SLOW * 20), connect_ms=10), ("accessible", None, "ok", "throughput.not_slower")),
    ("far server, and throttled beyond what distance explains", trials(flat(SLOW), connect_ms=50),
     innocuous(flat(SLOW), connect_ms=50), trials(flat(FAST), connect_ms=10),
     ("throttled", "tcp", "throttle.ip", "throttle.ip"), HELPER_FAST),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "target", "inn", "ref", "expected", "more"),
    [(*c, {})[:6] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decision(
    name: str,
    target: tuple[ThroughputObservation, ...],
    inn: tuple[ThroughputObservation, ...],
    ref: tuple[ThroughputObservation, ...],
    expected: tuple[str, str | None, str, str],
    more: dict[str, Any],
) -> None:
    ev = accessible_evidence(target)
    ctl = Controls(throughput_innocuous=inn, throughput_reference=ref, **more)
    v = classify(ev, ctl, load_bundled())
    assert (v.verdict, v.layer, v.detail, v.rule) == expected, v.reason
    assert "throughput" in v.evidence and v.reason
    if v.verdict == "throttled":
        assert v.throughput_kbps is not None and v.baseline_kbps is not None
        assert v.throughput_kbps <= v.baseline_kbps / RATIO


def test_rates_and_evidence_of_a_delayed_sni_throttle() -> None:
    ev = accessible_evidence(trials(delayed(150_000, FAST, SLOW)))
    ctl = Controls(
        throughput_innocuous=innocuous(flat(FAST)), throughput_reference=trials(flat(FAST))
    )
    v = classify(ev, ctl, load_bundled())
    facts = v.evidence["throughput"]
    assert v.throughput_kbps == pytest.approx(SLOW * 8 / 1000, rel=0.1)  # after the trigger
    assert v.baseline_kbps == pytest.approx(FAST * 8 / 1000, rel=0.2)  # the innocuous SNI
    assert 150_000 <= facts["change_at_bytes"] <= 152_000
    assert "after the first" in v.reason and str(facts["change_at_bytes"]) in v.reason
    assert facts["flat"] is True and facts["stability_cv"] < 0.25
    assert facts["vs_innocuous"]["ks_p"] < 0.01 and facts["vs_innocuous"]["effect"] >= 0.5
    assert facts["innocuous_certificate_checked"] is False


def test_a_wandering_rate_is_recorded_as_not_flat() -> None:
    wander = trials(lambda t, got: SLOW * (1.6 + math.sin(3 * t)), seconds=5)
    v = classify(
        accessible_evidence(wander),
        Controls(
            throughput_innocuous=innocuous(flat(FAST)), throughput_reference=trials(flat(FAST))
        ),
        load_bundled(),
    )
    assert v.detail == "throttle.sni"  # slow is slow; the shape is for the reader
    assert v.evidence["throughput"]["flat"] is False


def test_throughput_never_overrides_blocking() -> None:
    ev = accessible_evidence(trials(flat(SLOW)))
    failed = TLSObservation(
        IP, 443, HOST, "connection_reset", "tls_handshake", 1.0, None, None, None, (), None,
        None, 3.0,
    )  # fmt: skip
    ok = TLSObservation(
        IP, 443, "www.example.com", None, None, 1.0, 2.0, "TLSv1.3", None, (), None, None, 3.0
    )
    blocked = InputEvidence(
        ev.kind, ev.input, ev.hostname, ev.scheme, dns=ev.dns, tls=(failed,),
        throughput=ev.throughput,
    )  # fmt: skip
    v = classify(blocked, Controls(tls_innocuous=(ok,)), load_bundled())
    assert (v.verdict, v.detail) == ("blocked", "tls.reset")


def test_the_base_verdict_is_kept_when_not_throttled() -> None:
    ev = accessible_evidence(trials(flat(FAST)))
    ctl = Controls(
        throughput_innocuous=innocuous(flat(FAST)), throughput_reference=trials(flat(FAST))
    )
    base = classify(accessible_evidence(()), ctl, load_bundled())
    v = classify_throughput(base, ev, ctl)
    assert (v.verdict, v.detail, v.layer) == ("accessible", "ok", None)
    assert v.reason.startswith(base.reason) and v.evidence["status"] == 200
    assert v.throughput_kbps == pytest.approx(FAST * 8 / 1000, rel=0.2)
