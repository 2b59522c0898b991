"""Which services each group of the daemon sweeps (pure)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from probe.config import Settings
from probe.config.sections import DaemonGroup
from targets.model import TargetList


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
