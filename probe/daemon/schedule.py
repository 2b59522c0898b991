"""When each group of services is swept: pure decisions on a monotonic clock, no I/O.

The runner (probe/daemon/runner.py) asks ``due`` which group to sweep now, tells
``finished`` when a sweep ended, and ``prompt`` when something changed (a resume from sleep,
a new network, the link back). The rules, each held by tests/probe/test_schedule.py:

- A group is planned ``every`` seconds after its last *start*, plus a random jitter (a share
  of the interval, capped) drawn once per sweep, so thousands of probes do not fire at once.
- Never stacked: one sweep at a time, and a group's next start is never before its last
  sweep ended; a sweep that overran its interval is followed at once by one more, not more.
- No burst after a sleep: a plan is one time, not a queue, so however many intervals were
  missed, at most one catch-up sweep runs.
- Throughput tests run in a group's sweep only when its ``throughput_every`` has elapsed
  since the last sweep that had them.
- Times are ``time.monotonic()`` seconds: setting the wall clock back or forward moves
  nothing. ``clock_jump`` and ``slept`` compare clocks to say what happened, for the log
  and for ``prompt``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from probe.config.sections import DaemonGroup, DaemonSettings


@dataclass(frozen=True, slots=True)
class Plan:
    """A group's timing, in seconds."""

    name: str
    every: float
    throughput_every: float
    jitter: float  # the most a sweep may be delayed at random (share of every, capped)


@dataclass(frozen=True, slots=True)
class GroupState:
    """Where a group stands, on the monotonic clock."""

    due: float  # planned start (jitter included)
    planned: float  # the plan before jitter (what accuracy is measured against: due)
    last_start: float | None = None
    last_end: float | None = None
    last_throughput: float | None = None  # start of the last sweep that had throughput tests
    sweeps: int = 0


def plans(settings: DaemonSettings) -> tuple[Plan, ...]:
    """Each configured group's timing."""
    return tuple(plan_of(g, settings) for g in settings.groups)


def plan_of(group: DaemonGroup, settings: DaemonSettings) -> Plan:
    """One group's timing: its interval, throughput interval and jitter bound."""
    jitter = min(group.every * settings.jitter, settings.jitter_max)
    throughput = group.throughput_every or settings.throughput_every
    return Plan(group.name, group.every, throughput, jitter)


def jitter_of(plan: Plan, u: float) -> float:
    """The random delay for a draw ``u`` in [0, 1)."""
    return plan.jitter * min(max(u, 0.0), 1.0)


def start(plans_: Iterable[Plan], now: float, draws: Mapping[str, float]) -> dict[str, GroupState]:
    """States at daemon start: every group's first sweep after its jitter alone."""
    return {p.name: GroupState(due=now + jitter_of(p, draws.get(p.name, 0.0)), planned=now)
            for p in plans_}  # fmt: skip


def due(states: Mapping[str, GroupState], now: float) -> str | None:
    """The group to sweep now: the one planned earliest among those due (None: none)."""
    ready = [(s.due, name) for name, s in states.items() if s.due <= now]
    return min(ready)[1] if ready else None


def next_wake(states: Mapping[str, GroupState]) -> float | None:
    """When the next sweep is planned (None: no groups)."""
    return min((s.due for s in states.values()), default=None)


def wants_throughput(plan: Plan, state: GroupState, now: float) -> bool:
    """Whether this sweep of the group may run throughput tests."""
    return state.last_throughput is None or now - state.last_throughput >= plan.throughput_every


def began(state: GroupState, now: float, throughput: bool) -> GroupState:
    """A sweep of the group started at ``now``."""
    return replace(
        state,
        last_start=now,
        last_throughput=now if throughput else state.last_throughput,
        sweeps=state.sweeps + 1,
    )


def finished(plan: Plan, state: GroupState, now: float, u: float) -> GroupState:
    """A sweep of the group ended at ``now``: plan the next, from its start, never before now."""
    started = state.last_start if state.last_start is not None else now
    planned = max(started + plan.every, now)
    return replace(state, last_end=now, planned=planned, due=planned + jitter_of(plan, u))


def prompt(states: Mapping[str, GroupState], now: float) -> dict[str, GroupState]:
    """Something changed (sleep, network, link back): every group is due now, once each."""
    return {n: replace(s, due=min(s.due, now), planned=min(s.planned, now))
            for n, s in states.items()}  # fmt: skip


def reconcile(
    states: Mapping[str, GroupState], plans_: Iterable[Plan], now: float, draws: Mapping[str, float]
) -> dict[str, GroupState]:
    """States after a reload: kept groups keep their history, replanned on their new interval;
    new groups start as at daemon start; removed ones go."""
    out: dict[str, GroupState] = {}
    for p in plans_:
        old = states.get(p.name)
        if old is None:
            out[p.name] = GroupState(due=now + jitter_of(p, draws.get(p.name, 0.0)), planned=now)
        elif old.last_start is None:
            out[p.name] = old
        else:
            planned = max(old.last_start + p.every, old.last_end or now)
            out[p.name] = replace(
                old, planned=planned, due=planned + jitter_of(p, draws.get(p.name, 0.0))
            )
    return out


def clock_jump(wall_delta: float, mono_delta: float, tolerance: float = 5.0) -> float:
    """How far the wall clock was set (seconds, + forward) over a span; 0 within tolerance.

    Suspend advances both the wall clock and CLOCK_BOOTTIME but not CLOCK_MONOTONIC: callers
    take the sleep (``slept``) out of the wall's delta first.
    """
    jump = wall_delta - mono_delta
    return jump if abs(jump) > tolerance else 0.0


def slept(boot_delta: float, mono_delta: float, tolerance: float = 5.0) -> float:
    """Seconds the machine was suspended over a span (CLOCK_BOOTTIME counts them); 0 if none."""
    gap = boot_delta - mono_delta
    return gap if gap > tolerance else 0.0
