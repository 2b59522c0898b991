"""Start-up benchmark: what a command costs before it measures anything.

Prints, each the median of --runs fresh processes (wall time, process start to exit, and
the process's CPU, user + system):

    probe --version         goal: < 0.3 s
    offline sweep           ``probe run`` of the bundled list (targets/default.toml) on a
                            vantage that is offline: its resolver, a DNS server of this bench
                            on 127.0.0.1, answers NXDOMAIN to every query, so no reference
                            host resolves and the sweep stops with ``vantage.offline`` before
                            contacting any target (goal: < 1 s). Rule 3 still retries each
                            lookup, but with ``limits.retry_delay = 0``: the default 1 s pause
                            before the retry is waiting, not start-up. Its status and verdict
                            counts are printed too, so a faster start that sweeps differently
                            shows.

Last line: ``startup: version N.NN s, offline sweep N.NN s``.
Run from the repository root:  python bench/startup.py [--runs 5]
The probe run is ``python -m probe`` in the current directory, whose packages' bytecode the
bench writes first (``compileall``, as an install does). Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bytecode import compile_bytecode

NXDOMAIN = 3


def answer(query: bytes) -> bytes | None:
    """The query turned into its NXDOMAIN reply (same id and question), or None if it is
    not a DNS query at all."""
    if len(query) < 12:
        return None
    flags = int.from_bytes(query[2:4], "big")
    # QR=1, the query's opcode and RD, RA=1, rcode NXDOMAIN; no answer/authority/additional.
    reply_flags = 0x8000 | (flags & 0x7900) | 0x0080 | NXDOMAIN
    return query[:2] + reply_flags.to_bytes(2, "big") + query[4:6] + bytes(6) + query[12:]


@contextmanager
def nxdomain_server() -> Iterator[str]:
    """A UDP and TCP DNS server on 127.0.0.1 that denies every name; yields ``ip:port``."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", port))
    tcp.listen(16)
    stop = threading.Event()

    def serve_udp() -> None:
        while not stop.is_set():
            try:
                data, peer = udp.recvfrom(4096)
            except OSError:
                return
            if (reply := answer(data)) is not None:
                udp.sendto(reply, peer)

    def serve_tcp() -> None:
        while not stop.is_set():
            try:
                conn, _ = tcp.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    size = int.from_bytes(conn.recv(2), "big")
                    reply = answer(conn.recv(size))
                    if reply is not None:
                        conn.sendall(len(reply).to_bytes(2, "big") + reply)
                except OSError:
                    pass

    threads = [threading.Thread(target=f, daemon=True) for f in (serve_udp, serve_tcp)]
    for t in threads:
        t.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        udp.close()
        tcp.shutdown(socket.SHUT_RDWR)
        tcp.close()


CPU: list[float] = []  # each process's user + system CPU, seconds (in the order run)


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall, proc


def version_run() -> float:
    wall, proc = timed([sys.executable, "-m", "probe", "--version"])
    if proc.returncode != 0 or not proc.stdout.startswith("probe "):
        raise SystemExit(f"probe --version failed: {proc.stderr[-2000:]}")
    return wall


def offline_run(tmp: Path, resolver: str, i: int) -> tuple[float, str, dict[str, int]]:
    """One offline sweep of the bundled list into a new database: wall, status, verdicts."""
    config = tmp / "probe.toml"
    config.write_text(
        f'[network]\nresolver = "{resolver}"\n[vantage]\nconsent = true\n'
        "[limits]\nretry_delay = 0\n",
        encoding="utf-8",
    )
    db = tmp / f"offline-{i}.sqlite"
    wall, proc = timed([sys.executable, "-m", "probe", "run", "--config", str(config),
                        "--db", str(db), "--json"])  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"the offline sweep failed ({proc.returncode}): {proc.stderr[-2000:]}")
    status = json.loads(proc.stdout)["status"]
    with sqlite3.connect(db) as conn:
        query = "SELECT verdict || ' ' || detail, count(*) FROM measurements GROUP BY 1"
        verdicts = dict(conn.execute(query))
    return wall, status, verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per figure (median)")
    args = parser.parse_args()
    compile_bytecode()
    versions = [version_run() for _ in range(args.runs)]
    version_cpu = statistics.median(CPU)
    CPU.clear()
    sweeps: list[float] = []
    outcomes: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="probe-startup-") as tmpdir, nxdomain_server() as dns:
        for i in range(args.runs):
            wall, status, verdicts = offline_run(Path(tmpdir), dns, i)
            sweeps.append(wall)
            outcomes.add(f"status {status}, verdicts {json.dumps(verdicts, sort_keys=True)}")
    version, sweep = statistics.median(versions), statistics.median(sweeps)
    # CPU too: on a busy machine the wall time says more about the others than the probe.
    print(
        f"probe --version: median {version:.2f} s of {args.runs} "
        f"({min(versions):.2f}-{max(versions):.2f}; goal < 0.3 s), CPU {version_cpu:.2f} s"
    )
    print(
        f"offline sweep of the bundled list: median {sweep:.2f} s of {args.runs} "
        f"({min(sweeps):.2f}-{max(sweeps):.2f}; goal < 1 s), CPU {statistics.median(CPU):.2f} s"
    )
    for outcome in sorted(outcomes):
        print(f"offline sweep: {outcome}")
    print(f"startup: version {version:.2f} s, offline sweep {sweep:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
