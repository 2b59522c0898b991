"""One ``probe run`` of a small target list against a loopback World, with [throughput] keys.

What the throughput and replay end-to-end tests share: each scenario is its own sweep, its
targets and config written into the test's tmp dir, its results read back from the store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probe.cli import main
from tests.servers.world import World


def service_lines(name: str, urls: Sequence[str], throughput_url: str | None = None) -> list[str]:
    """One ``[[service]]`` of category social."""
    lines = [
        "[[service]]",
        f'name = "{name}"',
        'category = "social"',
        f"urls = {json.dumps(list(urls))}",
    ]
    if throughput_url is not None:
        lines.append(f'throughput_url = "{throughput_url}"')
    return lines


def run_sweep(
    world: World,
    tmp: Path,
    services: Sequence[str],
    reference: str,
    throughput: dict[str, Any],
    flags: Sequence[str] = (),
) -> tuple[int, Path]:
    """Write the targets (``services``: service_lines joined) and the config, then sweep.

    ``reference`` is the vantage check's (control.reference); ``throughput`` the [throughput]
    keys. Returns the exit code and the database.
    """
    targets = tmp / "targets.toml"
    targets.write_text("\n".join(services) + "\n", encoding="utf-8")
    config = world.write_config(tmp / "probe.toml", reference)
    with config.open("a", encoding="utf-8") as f:
        f.write("[throughput]\n")
        f.writelines(f"{k} = {json.dumps(v)}\n" for k, v in throughput.items())
    db = tmp / "results.sqlite"
    args = ["run", "--config", str(config), "--targets", str(targets), "--db", str(db)]
    return main([*args, "--no-progress", *flags]), db
