"""Daemon benchmark: ``probe daemon`` with 500 loopback targets in four groups, an hour of
schedule compressed into a few minutes (every interval divided by --scale).

Groups (intervals before scaling): messaging 100 targets every 15 min, social 150 every
30 min, video 100 every 60 min, other 150 every 20 min; jitter 10 % of each interval.
Prints:

    peak RSS        of the daemon process, VmHWM (goal: <= 80 MB)
    idle CPU        user + system CPU of the daemon between sweeps, over the time between
                    them (1 s margins), as a share of one core (goal: < 0.5 %)
    schedule p95    a sweep's start minus its plan, jitter included, p95 (goal: < 2 s
                    plus the jitter; a group due while another sweeps waits for it: one
                    sweep at a time is the rule, and this figure shows what it costs)

    year db         then bench/retention.py: the database after a simulated year of hourly
                    sweeps of the bundled list, pruned daily with the default retention
                    (goal: <= 200 MB; --no-year skips it)

Last line: ``daemon: rss N MB, idle cpu N.N%, schedule p95 N.N s, year db N MB``.
Run from the repository root:  python bench/daemon.py [--scale 20] [--no-year]
The probe's packages' bytecode is written first (compileall), as an install does.
Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trustme

from bench.bytecode import compile_bytecode
from probe.config import DAEMON_DEFAULTS
from tests.servers.world import running_world

GROUPS = (("messaging", 100, 15), ("social", 150, 30), ("video", 100, 60), ("other", 150, 20))
TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _config(world_config: Path, scale: float) -> None:
    """Messaging by its category, social and video by their services, other: the rest."""
    lines = ["", "[daemon]", "jitter = 0.1"]
    for name, count, minutes in GROUPS:
        every = minutes * 60 / scale
        lines += ["[[daemon.group]]", f'name = "{name}"', f'every = "{every:g}s"']
        if name == "messaging":
            lines.append('categories = ["messaging"]')
        elif name != "other":
            services = ", ".join(f'"{name}-{i:03d}"' for i in range(count))
            lines.append(f"services = [{services}]")
    with world_config.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _targets(tmp: Path, names: dict[str, str], port: int) -> Path:
    lines = []
    for name, group in names.items():
        category = "messaging" if group == "messaging" else "social"
        lines += ["[[service]]", f'name = "{name.removesuffix(".test")}"',
                  f'category = "{category}"', f'urls = ["https://{name}:{port}/"]']  # fmt: skip
    path = tmp / "targets.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _sample(pid: int, seconds: float) -> list[tuple[float, float]]:
    """(wall time, CPU seconds) twice a second for ``seconds``."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append((time.time(), _cpu(pid)))
        time.sleep(0.5)
    return samples


def _idle_cpu(samples: list[tuple[float, float]], busy: list[tuple[float, float]]) -> float:
    """CPU share over the sample intervals that lie wholly outside every sweep (1 s margins)
    and after the first began (start-up, imports and the database's creation, is not idle)."""
    cpu = wall = 0.0
    first = min((s for s, _ in busy), default=float("inf"))
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        if t0 > first and all(t1 < s - 1 or t0 > e + 1 for s, e in busy):
            cpu, wall = cpu + c1 - c0, wall + t1 - t0
    return 100 * cpu / wall if wall else float("nan")


def _p95(values: list[float]) -> float:
    return values[min(len(values) - 1, int(0.95 * len(values)))] if values else float("nan")


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=20.0, help="an hour in 3600/SCALE s")
    parser.add_argument(
        "--concurrency", type=int, help="limits.concurrency (default: probe daemon's own)"
    )
    parser.add_argument("--no-year", action="store_true", help="skip bench/retention.py")
    args = parser.parse_args()
    compile_bytecode()
    names = {f"{g}-{i:03d}.test": g for g, n, _ in GROUPS for i in range(n)}
    ca = trustme.CA(organization_name="Bench Root")
    with tempfile.TemporaryDirectory(prefix="probe-bench-daemon-") as tmpdir:
        tmp = Path(tmpdir)
        bundle = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        with running_world(ca, str(bundle), ["ref.test", *names]) as world:
            port = world.web.https_port
            given = {} if args.concurrency is None else {"concurrency": args.concurrency}
            config = world.write_config(tmp / "probe.toml", f"https://ref.test:{port}/", **given)
            _config(config, args.scale)
            targets = _targets(tmp, names, port)
            db = tmp / "results.sqlite"
            cmd = [sys.executable, "-m", "probe", "daemon", "--config", str(config),
                   "--targets", str(targets), "--db", str(db)]  # fmt: skip
            log = (tmp / "daemon.log").open("wb")
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
            try:
                samples = _sample(proc.pid, 3600 / args.scale)
                rss = _hwm_mb(proc.pid)
            finally:
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=60)
                log.close()
        if not db.exists() or code != 0:
            print((tmp / "daemon.log").read_text(), file=sys.stderr)
            return 1
        with sqlite3.connect(db) as conn:
            sweeps = conn.execute(
                "SELECT s.planned_at, s.started_at, r.finished_at, r.status FROM daemon_sweeps s"
                " JOIN runs r USING (run_id) ORDER BY s.started_at"
            ).fetchall()
            inputs = conn.execute("SELECT count(*) FROM measurements").fetchone()[0]
    late = sorted(_ts(s) - _ts(p) for p, s, _, _ in sweeps)
    busy = [(_ts(s), _ts(f) if f else time.time()) for _, s, f, _ in sweeps]
    # The schedule's own accuracy: start minus the later of its plan and the end of the sweep
    # before it (one sweep at a time: a group due during another's sweep waits for it).
    own = sorted(
        _ts(s) - max(_ts(p), busy[i - 1][1] if i else 0.0) for i, (p, s, _, _) in enumerate(sweeps)
    )
    p95 = _p95(own)
    idle = _idle_cpu(samples, busy)
    took = [e - s for s, e in busy]
    concurrency = (
        args.concurrency or f"{DAEMON_DEFAULTS['limits.concurrency']} (the daemon's default)"
    )
    print(f"targets: {len(names)} in {len(GROUPS)} groups; an hour in {3600 / args.scale:.0f} s; "
          f"cores {os.cpu_count()}; limits.concurrency {concurrency}; "
          f"exit {code} on SIGTERM")  # fmt: skip
    print(f"sweeps: {len(sweeps)} ({', '.join(sorted({st for *_, st in sweeps}))}), "
          f"{inputs} inputs stored; sweep time median {sorted(took)[len(took) // 2]:.1f} s, "
          f"max {max(took):.1f} s")  # fmt: skip
    print(f"start minus plan: median {late[len(late) // 2]:.2f} s, p95 {_p95(late):.2f} s, "
          f"max {late[-1]:.2f} s (waits behind another group's sweep included)")  # fmt: skip
    print(f"start minus max(plan, end of the sweep before): p95 {p95:.2f} s, max {own[-1]:.2f} s; "
          f"peak RSS {rss:.1f} MB (goal 80), idle CPU goal 0.5 %, schedule goal 2 s")  # fmt: skip
    line = f"daemon: rss {rss:.0f} MB, idle cpu {idle:.1f}%, schedule p95 {p95:.1f} s"
    if not args.no_year:
        line += f", year db {_year_db_mb()} MB"
    print(line)
    return 0 if code == 0 else 1


def _year_db_mb() -> str:
    """bench/retention.py's year figure (its own output goes by, for the breakdown)."""
    script = Path(__file__).resolve().parent / "retention.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    sys.stdout.write(done.stdout)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    m = re.match(r"retention: year db (\d+) MB", last)
    if done.returncode != 0 or m is None:
        sys.stderr.write(done.stderr)
        return "unknown (bench/retention.py failed)"
    return m.group(1)


if __name__ == "__main__":
    raise SystemExit(main())
