"""Sweeps of many inputs through the real ``probe run`` (a subprocess), on a loopback world.

What a long list must not cost: a DoH lookup per input beyond one per name, a TLS handshake
per DoH query, or, on a machine busy with other work, a verdict.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from probe.engine.doh import DOH_CONNECTIONS
from tests.servers.world import World, running_world

ROOT = Path(__file__).resolve().parents[1]


def fast_names(n: int) -> list[str]:
    return [f"fast-{i:04d}.test" for i in range(n)]


@pytest.fixture
def big_world(ca: trustme.CA, ca_bundle: str) -> Iterator[World]:
    """A world whose web server answers 1,000 names (and the reference, ref.test)."""
    with running_world(ca, ca_bundle, ["ref.test", *fast_names(1000)]) as world:
        yield world


def sweep(
    world: World, tmp: Path, names: list[str], python: tuple[str, ...] = (), **limits: float
) -> dict[str, object]:
    """``probe run --json`` of one HTTPS input per name, as a user runs it; its JSON.
    ``python``: options for the interpreter (``-X importtime`` writes to the stderr kept in
    ``out["stderr"]``)."""
    lines = []
    for name in names:
        lines += ["[[service]]", f'name = "{name.split(".")[0]}"', 'category = "social"',
                  f'urls = ["https://{name}:{world.web.https_port}/"]']  # fmt: skip
    targets = tmp / "targets.toml"
    targets.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = world.write_config(
        tmp / "probe.toml", f"https://ref.test:{world.web.https_port}/", **limits
    )
    cmd = [sys.executable, *python, "-m", "probe", "run", "--config", str(config), "--targets",
           str(targets), "--db", str(tmp / "results.sqlite"), "--json"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, check=False, cwd=ROOT, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, object] = json.loads(proc.stdout)
    out["stderr"] = proc.stderr
    return out


def test_a_sweep_loads_neither_the_resolver_module_nor_the_orm(
    big_world: World, tmp_path: Path
) -> None:
    """What a sweep does not need, it does not import: dnspython's stub resolver (about 1 MB
    and 40 ms; the probe sends its own queries) and SQLAlchemy's ORM (6 MB; the store is
    Core). ``-X importtime`` lists every module the run imported, from its first to its exit."""
    names = fast_names(3)
    out = sweep(big_world, tmp_path, names, python=("-X", "importtime"), dns_timeout=2.0)
    assert out["status"] == "completed"
    assert [m["detail"] for m in out["measurements"]] == ["ok"] * 3  # type: ignore[attr-defined]
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in str(out["stderr"]).splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert {"probe.engine.sweep", "dns.message", "sqlalchemy.engine"} <= imported  # it lists
    assert not {m for m in imported if m == "dns.resolver" or m.startswith("sqlalchemy.orm")}


def test_a_long_sweep_asks_each_name_once_over_a_few_connections(
    big_world: World, tmp_path: Path
) -> None:
    """300 inputs, 128 at once: one DoH query per name, at most DOH_CONNECTIONS handshakes."""
    names = fast_names(300)
    before = big_world.doh.handshakes
    out = sweep(big_world, tmp_path, names, dns_timeout=2.0, sweep_timeout=240.0)
    assert out["status"] == "completed"
    details = [m["detail"] for m in out["measurements"]]  # type: ignore[attr-defined]
    assert details == ["ok"] * len(names)
    assert {n: big_world.truth.queries[n] for n in names} == dict.fromkeys(names, 1)
    assert sum(big_world.truth.queries.values()) <= len(names)
    assert big_world.doh.handshakes - before <= DOH_CONNECTIONS


def stored_verdicts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        query = "SELECT verdict || ' ' || detail, count(*) FROM measurements GROUP BY 1"
        return dict(conn.execute(query))


BUSY_LOOP = "while True:\n    pass\n"


@pytest.fixture
def busy_cores() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Another process keeping every core busy (one busy loop per core), ended by its PID."""
    procs = [
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)


def test_a_busy_machine_gives_no_verdict_and_keeps_the_vantage_online(
    ca: trustme.CA, ca_bundle: str, tmp_path: Path, busy_cores: list[subprocess.Popen[bytes]]
) -> None:
    """1,000 healthy loopback inputs swept while both cores spin elsewhere: every one is
    accessible, and the vantage is online (starvation is the probe's delay, not a verdict)."""
    names = [f"busy-{i:04d}.scale.test" for i in range(1000)]
    # One wildcard certificate, as a site shows a few names (not 1,000 in every handshake).
    with running_world(ca, ca_bundle, ["ref.test", "*.scale.test"]) as world:
        for name in names:
            world.name(name)
        assert all(proc.poll() is None for proc in busy_cores)  # still spinning
        # The default per-input deadline; timeouts a few times a healthy loopback's.
        out = sweep(world, tmp_path, names, connect_timeout=2.0, http_timeout=4.0,
                    dns_timeout=2.0, target_timeout=60.0, sweep_timeout=600.0)  # fmt: skip
    assert all(proc.poll() is None for proc in busy_cores)
    assert out["status"] == "completed" and out["vantage_ok"] is True
    assert stored_verdicts(tmp_path / "results.sqlite") == {"accessible ok": len(names)}
