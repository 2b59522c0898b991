"""The daemon's schedule: tables of cases and properties over any sequence of events."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.config.sections import DaemonGroup, DaemonSettings
from probe.daemon import schedule
from probe.daemon.schedule import GroupState, Plan

MSG = Plan("messaging", every=1800.0, throughput_every=6 * 3600.0, jitter=180.0)
SOC = Plan("social", every=3600.0, throughput_every=6 * 3600.0, jitter=300.0)


def test_the_default_schedule_and_its_jitter_cap() -> None:
    plans = {p.name: p for p in schedule.plans(DaemonSettings())}
    assert set(plans) == {"messaging", "rest"}
    assert plans["messaging"].every == 1800 and plans["rest"].every == 3600
    assert plans["messaging"].jitter == 180 and plans["rest"].jitter == 300  # 10 %, cap 300 s
    long = schedule.plan_of(DaemonGroup("x", every=86400.0), DaemonSettings())
    assert long.jitter == 300 and long.throughput_every == 6 * 3600


@pytest.mark.parametrize(
    ("start", "end", "u", "planned", "due"),
    [
        (0.0, 100.0, 0.0, 1800.0, 1800.0),  # on time: from the start, not the end
        (0.0, 100.0, 0.5, 1800.0, 1890.0),  # plus its jitter
        (0.0, 2500.0, 0.0, 2500.0, 2500.0),  # overran: the next at once, never stacked
        (0.0, 9000.0, 1.0, 9000.0, 9180.0),  # slept through five intervals: one sweep
    ],
)
def test_finished_plans_the_next_sweep(
    start: float, end: float, u: float, planned: float, due: float
) -> None:
    state = schedule.began(GroupState(due=start, planned=start), start, throughput=False)
    after = schedule.finished(MSG, state, end, u)
    assert (after.planned, after.due) == (planned, due)


def test_due_picks_the_earliest_planned_and_none_before_time() -> None:
    states = {"messaging": GroupState(due=10.0, planned=10.0),
              "social": GroupState(due=5.0, planned=5.0)}  # fmt: skip
    assert schedule.due(states, 4.0) is None
    assert schedule.due(states, 20.0) == "social"
    assert schedule.next_wake(states) == 5.0


def test_throughput_at_most_every_throughput_interval() -> None:
    s = GroupState(due=0.0, planned=0.0)
    assert schedule.wants_throughput(MSG, s, 0.0)
    s = schedule.began(s, 0.0, throughput=True)
    assert not schedule.wants_throughput(MSG, s, 1800.0)
    assert schedule.wants_throughput(MSG, s, 6 * 3600.0)


def test_prompt_makes_every_group_due_once() -> None:
    states = schedule.start([MSG, SOC], 0.0, {"messaging": 1.0, "social": 1.0})
    prompted = schedule.prompt(states, 50.0)
    assert all(s.due <= 50.0 for s in prompted.values())
    assert schedule.prompt(prompted, 60.0) == prompted  # already due: unchanged


def test_reconcile_keeps_history_replans_and_drops() -> None:
    states = {"messaging": schedule.finished(
        MSG, schedule.began(GroupState(0.0, 0.0), 0.0, True), 10.0, 0.0)}  # fmt: skip
    faster = Plan("messaging", every=600.0, throughput_every=3600.0, jitter=0.0)
    out = schedule.reconcile(states, [faster, SOC], 20.0, {})
    assert out["messaging"].due == 600.0 and out["messaging"].last_throughput == 0.0
    assert out["social"].due == 20.0 and out["social"].last_start is None
    assert set(schedule.reconcile(out, [SOC], 30.0, {})) == {"social"}


@pytest.mark.parametrize(
    ("wall", "mono", "boot", "jump", "asleep"),
    [
        (30.0, 30.0, 30.0, 0.0, 0.0),  # nothing happened
        (31.0, 30.0, 30.0, 0.0, 0.0),  # within tolerance (NTP slews)
        (3630.0, 30.0, 30.0, 3600.0, 0.0),  # clock set an hour forward
        (-3570.0, 30.0, 30.0, -3600.0, 0.0),  # clock set an hour back
        (630.0, 30.0, 630.0, 0.0, 600.0),  # suspended ten minutes: a sleep, not a jump
    ],
)
def test_clock_jumps_and_sleep_are_told_apart(
    wall: float, mono: float, boot: float, jump: float, asleep: float
) -> None:
    slept = schedule.slept(boot, mono)
    assert slept == asleep
    assert schedule.clock_jump(wall - slept, mono) == jump


# ------------------------------------------------------------------ properties

events = st.lists(
    st.tuples(
        st.floats(0.0, 20000.0),  # how long the sweep took
        st.floats(0.0, 1.0),  # the jitter draw
        st.floats(0.0, 50000.0),  # a gap before the loop looks again (sleep, busy)
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_any_run_of_sweeps_never_stacks_nor_bursts(evs: list[tuple[float, float, float]]) -> None:
    """One group driven by the loop's rules: starts only when due, never before the last sweep
    ended, never closer than the interval unless that sweep overran, jitter within bounds."""
    now = 0.0
    states = schedule.start([MSG], now, {"messaging": 0.3})
    starts: list[tuple[float, float]] = []  # (start, end)
    for took, u, gap in evs:
        now += gap
        name = schedule.due(states, now)
        if name is None:
            wake = schedule.next_wake(states)
            assert wake is not None and wake > now
            now = wake
            name = schedule.due(states, now)
        assert name == "messaging"
        st_ = states[name]
        assert st_.due - st_.planned <= MSG.jitter + 1e-6
        states[name] = schedule.began(st_, now, schedule.wants_throughput(MSG, st_, now))
        start, now = now, now + took
        states[name] = schedule.finished(MSG, states[name], now, u)
        assert states[name].due >= now  # never before this one ended
        if starts:
            prev_start, prev_end = starts[-1]
            assert start >= prev_end
            assert start - prev_start >= min(MSG.every, prev_end - prev_start) - 1e-6
        starts.append((start, now))


@given(st.floats(-1e6, 1e6), st.floats(0, 1e6), st.floats(0, 1e6))
def test_clock_functions_are_total(wall: float, mono: float, boot: float) -> None:
    assert schedule.slept(boot, mono) >= 0
    jump = schedule.clock_jump(wall, mono)
    assert jump == 0 or abs(jump) > 5.0
