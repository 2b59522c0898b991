"""Sweep benchmark: 200 loopback targets through the real ``probe run``.

Targets: fast pages, targets that go silent after the ClientHello (they time out, are
retried, and get an innocuous-SNI control that times out too), and targets reset after the
ClientHello (SNI filtering). Every target has its own name, so the per-host limit never
serialises them. Prints:

    wall / critical path   the sweep's wall time (process start to exit) divided by the
                           slowest single target's measured time (goal: <= 1.5)
    peak RSS               of the probe process (goal: <= 120 MB)
    CPU per target         user + system CPU of the probe process / number of targets

    DoH                    queries and TLS handshakes the DoH server saw (one query per name,
                           a few handshakes per sweep)

Run from the repository root:  python bench/sweep.py [--fast N --silent N --reset N]
The probe's packages' bytecode is written first (compileall), as an install does.
``--scale`` runs 200 (120/40/40) and 2,000 (1,200/400/400) targets, each in a fresh process,
prints one line per size, then ``sweep: 2000 targets, wall/critical 1.xx, rss NNN MB, cpu N.N
ms/target``. The web server shows one wildcard certificate (``*.bench.test``), as a real site
shows a few names; ``--one-san-each`` gives it one certificate naming every target instead (a
2,001-name certificate at 2,000 targets, which every handshake then parses and every TLS
observation stores). The probe run is ``python -m probe`` in the current directory:
that directory's ``probe`` package, else PYTHONPATH's, else the installed one.
Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trustme

from bench.bytecode import compile_bytecode
from tests.servers.tcp_servers import SilentListener, SNIFilter
from tests.servers.world import running_world

SCALE = ((120, 40, 40), (1200, 400, 400))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", type=int, default=120)
    parser.add_argument("--silent", type=int, default=40)
    parser.add_argument("--reset", type=int, default=40)
    parser.add_argument("--connect-timeout", type=float, default=2.0)
    parser.add_argument("--one-san-each", action="store_true", help="a name per target in the cert")
    parser.add_argument(
        "--scale", action="store_true", help="200 then 2,000 targets; one line each"
    )
    parser.add_argument("--summary", action="store_true", help="one JSON line (for --scale)")
    args = parser.parse_args()
    if not args.summary:  # --scale compiles once for the runs it starts with --summary
        compile_bytecode()
    if args.scale:
        return scale(args)
    figures = run_once(args)
    if figures is None:
        return 1
    if args.summary:
        print(json.dumps(figures))
    else:
        print_figures(args, figures)
    return 0


def scale(args: argparse.Namespace) -> int:
    """Each size in a process of its own, so peak RSS and CPU are that sweep's alone."""
    last: dict[str, Any] = {}
    for fast, silent, reset in SCALE:
        cmd = [sys.executable, __file__, "--summary", "--fast", str(fast), "--silent",
               str(silent), "--reset", str(reset), "--connect-timeout", str(args.connect_timeout),
               *(["--one-san-each"] if args.one_san_each else [])]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-5000:], file=sys.stderr)
            return 1
        last = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{last['targets']} targets ({fast}/{silent}/{reset}): wall {last['wall']:.2f} s, "
              f"slowest {last['slowest']:.2f} s, wall/critical {last['ratio']:.2f}, rss "
              f"{last['rss_mb']:.0f} MB, cpu {last['cpu_ms']:.1f} ms/target, DoH "
              f"{last['doh_queries']} queries / {last['doh_handshakes']} handshakes, verdicts "
              f"{json.dumps(last['verdicts'], sort_keys=True)}")  # fmt: skip
    print(f"sweep: {last['targets']} targets, wall/critical {last['ratio']:.2f}, "
          f"rss {last['rss_mb']:.0f} MB, cpu {last['cpu_ms']:.1f} ms/target")  # fmt: skip
    return 0


def run_once(args: argparse.Namespace) -> dict[str, Any] | None:
    """One sweep of the kinds asked for; its figures, or None if the probe failed."""
    kinds = ["fast"] * args.fast + ["silent"] * args.silent + ["reset"] * args.reset
    # Interleave the kinds as a real list would mix them.
    kinds = [kinds[i] for i in sorted(range(len(kinds)), key=lambda i: (i * 7919) % len(kinds))]
    names = [f"{kind}-{i:04d}.bench.test" for i, kind in enumerate(kinds)]
    ca = trustme.CA(organization_name="Bench Root")
    with tempfile.TemporaryDirectory(prefix="probe-bench-") as tmpdir:
        tmp = Path(tmpdir)
        bundle = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        certified = names if args.one_san_each else ["*.bench.test"]
        with running_world(ca, str(bundle), ["ref.test", *certified]) as world:
            for name in names:
                world.name(name)
            silent = world.peer(SilentListener(idle=120))
            reset_names = {n for n in names if n.startswith("reset-")}
            reset = world.peer(SNIFilter(world.web.https_port, reset_names, "reset"))
            port = {"fast": world.web.https_port, "silent": silent.port, "reset": reset.port}
            lines = []
            for name, kind in zip(names, kinds, strict=True):
                lines += [
                    "[[service]]", f'name = "{name.removesuffix(".bench.test")}"',
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
                sweep_timeout=600.0,
            )
            db = tmp / "results.sqlite"
            # PROFILE=out.prof runs the probe under cProfile.
            prof = os.environ.get("PROFILE")
            profile = ["-m", "cProfile", "-o", prof] if prof else []
            cmd = [sys.executable, *profile, "-m", "probe", "run", "--config", str(config),
                   "--targets", str(targets), "--db", str(db), "--json"]  # fmt: skip
            t0 = time.monotonic()
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
            wall = time.monotonic() - t0
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            doh_queries = sum(world.truth.queries.values())
            doh_handshakes = world.doh.handshakes
            if os.environ.get("KEEP_DB"):  # KEEP_DB=path keeps the results for a look
                shutil.copy(db, os.environ["KEEP_DB"])
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return None
        return figures(json.loads(proc.stdout), db, wall, usage, doh_queries, doh_handshakes)


def figures(
    result: dict[str, Any], db: Path, wall: float, usage: Any, doh_queries: int, handshakes: int
) -> dict[str, Any]:
    """What one sweep's run and database show."""
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
    n = len(durations)
    return {
        "targets": n, "status": result["status"], "verdicts": verdicts, "wall": wall,
        "slowest": max(durations), "median": sorted(durations)[n // 2],
        "first": timeline[0], "last": timeline[1], "doh_queries": doh_queries,
        "doh_handshakes": handshakes, "names": n + 1,
        "rss_mb": usage.ru_maxrss / 1024, "cpu_ms": (usage.ru_utime + usage.ru_stime) / n * 1000,
        "ratio": wall / max(durations),
    }  # fmt: skip


def print_figures(args: argparse.Namespace, f: dict[str, Any]) -> None:
    print(f"targets: {f['targets']} ({args.fast} fast, {args.silent} silent, {args.reset} reset);"
          f" status {f['status']}; cores {os.cpu_count()}; default limits (concurrency 128, per "
          f"host 2), connect timeout {args.connect_timeout} s")  # fmt: skip
    print(f"verdicts: {json.dumps(f['verdicts'], sort_keys=True)}")
    print(f"wall time: {f['wall']:.2f} s; slowest target: {f['slowest']:.2f} s; "
          f"median target: {f['median']:.3f} s")  # fmt: skip
    print(f"first target started {f['first']:.2f} s after the run began; "
          f"last finished at {f['last']:.2f} s (process start, exit: the rest)")  # fmt: skip
    print(f"DoH: {f['doh_queries']} queries, {f['doh_handshakes']} TLS handshakes "
          f"({f['names']} names)")  # fmt: skip
    print(f"peak RSS: {f['rss_mb']:.1f} MB")
    print(f"CPU per target: {f['cpu_ms']:.1f} ms")
    print(f"wall / critical path: {f['ratio']:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
