"""What the daemon runs: a loaded config, and which services each of its groups sweeps
(pure)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from probe.config import Settings
from probe.config.sections import DaemonGroup, DaemonSettings
from probe.daemon import schedule
from targets.model import TargetList


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a (re)load of the config and the target lists gives."""

    settings: Settings
    daemon: DaemonSettings
    targets: TargetList


Loader = Callable[[], Loaded]  # raises ConfigError or TargetErrors on bad input


@dataclass
class GroupsConfig:
    """A loaded config with each group's plan and share of the targets."""

    loaded: Loaded
    plans: dict[str, schedule.Plan] = field(default_factory=dict)
    targets: dict[str, TargetList] = field(default_factory=dict)

    def __post_init__(self) -> None:
        groups = self.loaded.daemon.groups
        self.plans = {p.name: p for p in (schedule.plan_of(g, self.loaded.daemon) for g in groups)}
        self.targets = targets_of(groups, self.loaded.targets)


def targets_of(groups: Iterable[DaemonGroup], targets: TargetList) -> dict[str, TargetList]:
    """Each group's share of the target list: the services it names or whose category it
    names; the group without either takes every service no other group takes."""
    groups = tuple(groups)
    named = {
        g.name: tuple(s for s in targets.services
                      if s.name in g.services or s.category in g.categories)
        for g in groups if not g.takes_rest
    }  # fmt: skip
    taken = {s.name for services in named.values() for s in services}
    out: dict[str, TargetList] = {}
    for g in groups:
        services = (
            tuple(s for s in targets.services if s.name not in taken)
            if g.takes_rest
            else named[g.name]
        )
        out[g.name] = dataclasses.replace(targets, services=services)
    return out


def without_throughput(settings: Settings) -> Settings:
    """The settings of a sweep whose group's throughput interval has not elapsed."""
    off = dataclasses.replace(settings.throughput, enabled=False, replay=False)
    return dataclasses.replace(settings, throughput=off)
