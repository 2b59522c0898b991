"""Sweep benchmark: 200 loopback targets through the real ``probe run``.

Targets: fast pages, targets that go silent after the ClientHello (they time out, are
retried, and get an innocuous-SNI control that times out too), and targets reset after the
ClientHello (SNI filtering). Every target has its own name, so the per-host limit never
serialises them. Prints:

    wall / critical path   the sweep's wall time (process start to exit) divided by the
                           slowest single target's measured time (goal: <= 1.3)
    peak RSS               of the probe process (goal: <= 120 MB)
    CPU per target         user + system CPU of the probe process / number of targets

Run from the repository root:  python bench/sweep.py [--fast N --silent N --reset N]
Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trustme

from tests.servers.tcp_servers import SilentListener, SNIFilter
from tests.servers.world import running_world


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", type=int, default=120)
    parser.add_argument("--silent", type=int, default=40)
    parser.add_argument("--reset", type=int, default=40)
    parser.add_argument("--connect-timeout", type=float, default=2.0)
    args = parser.parse_args()
    kinds = ["fast"] * args.fast + ["silent"] * args.silent + ["reset"] * args.reset
    # Interleave the kinds as a real list would mix them.
    kinds = [kinds[i] for i in sorted(range(len(kinds)), key=lambda i: (i * 7919) % len(kinds))]
    names = [f"{kind}-{i:03d}.test" for i, kind in enumerate(kinds)]

    ca = trustme.CA(organization_name="Bench Root")
    with tempfile.TemporaryDirectory(prefix="probe-bench-") as tmpdir:
        tmp = Path(tmpdir)
        bundle = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        with running_world(ca, str(bundle), ["ref.test", *names]) as world:
            silent = world.peer(SilentListener(idle=120))
            reset_names = {n for n in names if n.startswith("reset-")}
            reset = world.peer(SNIFilter(world.web.https_port, reset_names, "reset"))
            port = {"fast": world.web.https_port, "silent": silent.port, "reset": reset.port}
            lines = []
            for name, kind in zip(names, kinds, strict=True):
                lines += [
                    "[[service]]", f'name = "{name.removesuffix(".test")}"',
                    'category = "social"', f'urls = ["https://{name}:{port[kind]}/"]',
                ]  # fmt: skip
            targets = tmp / "targets.toml"
            targets.write_text("\n".join(lines) + "\n", encoding="utf-8")
            config = world.write_config(
                tmp / "probe.toml",
                f"https://ref.test:{world.web.https_port}/",
                connect_timeout=args.connect_timeout,
                retry_delay=0.5,
                target_timeout=60.0,
            )
            db = tmp / "results.sqlite"
            # PROFILE=out.prof runs the probe under cProfile.
            prof = os.environ.get("PROFILE")
            profile = ["-m", "cProfile", "-o", prof] if prof else []
            cmd = [sys.executable, *profile, "-m", "probe", "run", "--config", str(config),
                   "--targets", str(targets), "--db", str(db), "--json"]  # fmt: skip
            t0 = time.monotonic()
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
            wall = time.monotonic() - t0
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            doh_queries = sum(world.truth.queries.values())
            doh_handshakes = world.doh.handshakes
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        result = json.loads(proc.stdout)
        with sqlite3.connect(db) as conn:
            durations = [r[0] / 1000 for r in conn.execute("SELECT duration_ms FROM measurements")]
            timeline = conn.execute(
                "SELECT (julianday(min(m.measured_at)) - julianday(r.started_at)) * 86400,"
                " max((julianday(m.measured_at) - julianday(r.started_at)) * 86400"
                " + m.duration_ms / 1000)"
                " FROM measurements m JOIN runs r USING (run_id)"
            ).fetchone()
            query = "SELECT verdict || ' ' || detail, count(*) FROM measurements GROUP BY 1"
            verdicts = dict(conn.execute(query))
    slowest = max(durations)
    n = len(durations)
    print(f"targets: {n} ({args.fast} fast, {args.silent} silent, {args.reset} reset); "
          f"status {result['status']}; cores {os.cpu_count()}; default limits "
          f"(concurrency 128, per host 2), connect timeout {args.connect_timeout} s")  # fmt: skip
    print(f"verdicts: {json.dumps(verdicts, sort_keys=True)}")
    print(f"wall time: {wall:.2f} s; slowest target: {slowest:.2f} s; "
          f"median target: {sorted(durations)[n // 2]:.3f} s")  # fmt: skip
    print(f"first target started {timeline[0]:.2f} s after the run began; "
          f"last finished at {timeline[1]:.2f} s (process start, exit: the rest)")  # fmt: skip
    print(f"DoH: {doh_queries} queries, {doh_handshakes} TLS handshakes "
          f"({len(names) + 1} names)")  # fmt: skip
    print(f"peak RSS: {usage.ru_maxrss / 1024:.1f} MB")
    print(f"CPU per target: {(usage.ru_utime + usage.ru_stime) / n * 1000:.1f} ms")
    print(f"wall / critical path: {wall / slowest:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
