"""The SNI replay's rule as a table, and a property: it never fires on equal names."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from measurements.observations import ThroughputObservation
from probe.classify import classify
from probe.classify.evidence import Controls
from probe.classify.fingerprints import load_bundled
from tests.probe.test_throttle import (
    FAST,
    SLOW,
    Profile,
    accessible_evidence,
    delayed,
    flat,
    transfer,
)

FP = load_bundled()
HELPER = "198.18.0.9"


def replays(
    profile: Profile, direction: str, *, sni: str, n: int = 3, seed: int = 0
) -> tuple[ThroughputObservation, ...]:
    """``n`` replay transfers in one direction, as measurements.replay records them."""
    out = []
    for i in range(n):
        t = transfer(profile, seconds=2.0, seed=seed + i, noise=0.3, sni=sni, status=200)
        out.append(dataclasses.replace(t, url=f"replay://{HELPER}:443/{direction}", ip=HELPER,
                                       verified=False, direction=direction))  # fmt: skip
    return tuple(out)


def judge(
    target: tuple[ThroughputObservation, ...], innocuous: tuple[ThroughputObservation, ...]
) -> tuple[str, str | None, str, str]:
    ev = dataclasses.replace(accessible_evidence(()), replay=target)
    v = classify(ev, Controls(replay_innocuous=innocuous), FP)
    return v.verdict, v.layer, v.detail, v.rule


HOST = "www.example.test"
OTHER = "www.example.com"
CASES = [
    ("download policed by name", flat(SLOW), flat(FAST), flat(FAST), flat(FAST),
     ("throttled", "tls", "throttle.sni", "replay.sni")),
    ("upload policed by name only", flat(FAST), flat(FAST), flat(SLOW), flat(FAST),
     ("throttled", "tls", "throttle.sni", "replay.sni")),
    ("a throttle after the first 64 KiB", delayed(65536, FAST, SLOW), flat(FAST), flat(FAST),
     flat(FAST), ("throttled", "tls", "throttle.sni", "replay.sni")),
    ("a slow link slows both names alike", flat(SLOW), flat(SLOW), flat(SLOW), flat(SLOW),
     ("accessible", None, "ok", "http.ok")),
    ("both fast", flat(FAST), flat(FAST), flat(FAST), flat(FAST),
     ("accessible", None, "ok", "http.ok")),
    ("the innocuous name the slow one (not a throttle of the target)", flat(FAST), flat(SLOW),
     flat(FAST), flat(SLOW), ("accessible", None, "ok", "http.ok")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "down", "down_innocuous", "up", "up_innocuous", "expected"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_replay_rule(
    name: str,
    down: Profile,
    down_innocuous: Profile,
    up: Profile,
    up_innocuous: Profile,
    expected: tuple[str, str | None, str, str],
) -> None:
    target = replays(down, "down", sni=HOST) + replays(up, "up", sni=HOST, seed=10)
    innocuous = replays(down_innocuous, "down", sni=OTHER, seed=20) + replays(
        up_innocuous, "up", sni=OTHER, seed=30
    )
    got = judge(target, innocuous)
    assert got[:3] == expected[:3]
    if expected[0] == "throttled":
        assert got[3] == expected[3]


def test_too_few_transfers_say_nothing_and_say_why() -> None:
    target = replays(flat(SLOW), "down", sni=HOST, n=2)
    innocuous = replays(flat(FAST), "down", sni=OTHER, n=3)
    ev = dataclasses.replace(accessible_evidence(()), replay=target)
    v = classify(ev, Controls(replay_innocuous=innocuous), FP)
    assert v.verdict == "accessible"
    assert "too few usable transfers" in v.reason
    assert v.evidence["replay"]["down"]["vs_innocuous"] is None


def test_the_evidence_carries_both_directions() -> None:
    target = replays(flat(SLOW), "down", sni=HOST) + replays(flat(FAST), "up", sni=HOST)
    innocuous = replays(flat(FAST), "down", sni=OTHER) + replays(flat(FAST), "up", sni=OTHER)
    ev = dataclasses.replace(accessible_evidence(()), replay=target)
    v = classify(ev, Controls(replay_innocuous=innocuous), FP)
    facts = v.evidence["replay"]
    assert v.throughput_address == HELPER and facts["helper_address"] == HELPER
    assert facts["down"]["vs_innocuous"]["slower"] is True
    assert facts["up"]["vs_innocuous"]["slower"] is False
    assert v.throughput_kbps is not None and v.baseline_kbps is not None
    assert v.throughput_kbps * 4 <= v.baseline_kbps


@settings(max_examples=40, deadline=None)
@given(
    rate=st.floats(min_value=4_000, max_value=4_000_000),
    seed=st.integers(0, 1000),
    direction=st.sampled_from(["down", "up"]),
)
def test_the_same_line_for_both_names_is_never_a_throttle(
    rate: float, seed: int, direction: str
) -> None:
    # Whatever the rate, transfers that differ only by noise never make a throttle.
    target = replays(flat(rate), direction, sni=HOST, seed=seed)
    innocuous = replays(flat(rate), direction, sni=OTHER, seed=seed + 7)
    assert judge(target, innocuous)[0] == "accessible"
