"""Collector benchmark: 50 simulated probes upload real measurement rows (evidence included)
in gzip batches to ``probe collector serve`` on a throwaway PostgreSQL, all on 127.0.0.1.

The rows are a real probe's: a SQLite store filled by Database.record, read back through
the outbox exactly as ``probe upload`` sends them; each simulated probe has its own token,
its own run and its own ids (the probe's (run_id, id) pairs). Each probe offers --per-probe
measurements a second (batches of --batch), so the collector is measured below saturation,
as a deployment should run.

Phase 1 (--seconds): steady; prints the measurements stored per second and the p99 latency
of an upload (request sent to 2xx answer). Phase 2 (--seconds again): the collector is
killed with SIGKILL at its start and restarted on the same port; the probes retry with
backoff and jitter. Then every measurement a 2xx acknowledged is looked up by the key the
collector derives (token, run_id, id): ``lost`` counts those missing, ``duplicated`` the
rows beyond one per key.

The bench raises the collector's per-token rate (--rate 1000): the default of 5 uploads a
second is a deployment's guard, not the thing measured.

Last line: ``collector: N measurements/s, p99 N ms, lost N, duplicated N``.
Run from the repository root:  python bench/collector.py [--probes 50] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from sqlalchemy import create_engine, text

from probe.collector import outbox, tokens, wire
from probe.collector.ingest import stored_uid
from probe.store import open_database
from tests.probe.test_store import BLOCKED, OBS, THROTTLED, at, record, run_info
from tests.servers.postgres import running_postgres

ROOT = Path(__file__).resolve().parent.parent


def sample_rows(directory: Path, n: int = 200) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A real probe's run and measurements (with evidence) as the outbox reads them."""
    db = open_database(str(directory / "probe.sqlite"))
    info = run_info()
    db.begin_run(info)
    for i in range(n):
        db.record(record(info.run_id, BLOCKED if i % 3 else THROTTLED, at(i), observations=OBS))
    db.finish_run(info.run_id, "completed", {"inputs": n}, finished_at=at(n))
    batch = outbox.next_batch(db, n)
    db.close()
    return batch.runs[0], batch.measurements


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(db_url: str, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "probe", "collector", "serve", "--db", db_url,
           "--listen", f"127.0.0.1:{port}", "--rate", "1000", "--concurrency", "64"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the collector did not start")


class Probe:
    """One simulated probe: its token, its run, the bodies it will send."""

    def __init__(self, name: str, token: str, run: dict[str, Any], rows: list[dict[str, Any]]):
        self.name, self.token = name, token
        self.run = {**run, "run_id": uuid.uuid4().hex}
        self.rows = rows
        self.acked: list[int] = []
        self.next_id = 1
        self.latencies: list[tuple[float, float]] = []  # (sent at, seconds)
        self.bodies: list[tuple[list[int], bytes]] = []

    def prepare(self, args: Any, seconds: float) -> None:
        """Every body this probe will send in a phase, made before the clock starts (the
        bench's own gzip must not hold the event loop while answers wait)."""
        n = int(seconds * args.per_probe / args.batch) + 2
        self.bodies = [self.body(args.batch) for _ in range(n)]

    def body(self, batch: int) -> tuple[list[int], bytes]:
        ids = list(range(self.next_id, self.next_id + batch))
        self.next_id += batch
        ms = [{**random.choice(self.rows), "id": i, "run_id": self.run["run_id"]} for i in ids]
        return ids, wire.encode([self.run], ms)

    async def loop(self, session: aiohttp.ClientSession, url: str, args: Any, until: float) -> None:
        interval = args.batch / args.per_probe
        next_at = time.monotonic() + random.uniform(0, interval)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Encoding": "gzip"}
        while next_at < until:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            ids, body = self.bodies.pop() if self.bodies else self.body(args.batch)
            for attempt in range(12):
                sent = time.monotonic()
                try:
                    async with session.post(url, data=body, headers=headers) as r:
                        await r.read()
                        if r.status == 200:
                            self.latencies.append((sent, time.monotonic() - sent))
                            self.acked += ids
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(random.uniform(0, min(4.0, 0.25 * 2**attempt)))


async def phase(probes: list[Probe], port: int, args: Any, seconds: float) -> float:
    for p in probes:
        p.prepare(args, seconds)
    url = f"http://127.0.0.1:{port}{wire.PATH}"
    until = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        started = time.monotonic()
        await asyncio.gather(*(p.loop(session, url, args, until) for p in probes))
        return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=50, help="measurements per upload")
    parser.add_argument("--per-probe", type=float, default=50.0, help="measurements/s offered")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bench-collector-"))
    with running_postgres(directory) as server:
        db_url = server.create_database("collector")
        run, rows = sample_rows(directory)
        db = open_database(db_url)
        probes = [Probe(f"probe-{i}", tokens.add(db, f"probe-{i}"), run, rows)
                  for i in range(args.probes)]  # fmt: skip
        db.close()
        port = free_port()
        collector = start(db_url, port)
        print(f"{args.probes} probes offering {args.probes * args.per_probe:.0f} measurements/s "
              f"in batches of {args.batch}, {args.seconds:g} s steady")  # fmt: skip
        elapsed = asyncio.run(phase(probes, port, args, args.seconds))
        steady = sum(len(p.acked) for p in probes)
        rate = steady / elapsed
        lat = sorted(s for p in probes for _, s in p.latencies)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
        print(f"  steady: {steady} acknowledged in {elapsed:.1f} s; p50 "
              f"{lat[len(lat) // 2] * 1000:.0f} ms, p99 {p99:.0f} ms")  # fmt: skip

        async def with_kill() -> None:
            async def killer() -> None:
                nonlocal collector
                await asyncio.sleep(args.seconds / 4)
                collector.send_signal(signal.SIGKILL)
                collector.wait()
                print("  collector killed (SIGKILL); restarting")
                collector = await asyncio.to_thread(start, db_url, port)

            await asyncio.gather(phase(probes, port, args, args.seconds), killer())

        asyncio.run(with_kill())
        collector.send_signal(signal.SIGINT)
        collector.wait(timeout=30)
        lost, duplicated, total = check(db_url, probes)
        print(f"  after the kill: {total} rows, {sum(len(p.acked) for p in probes)} acknowledged")
    print(f"collector: {rate:.0f} measurements/s, p99 {p99:.0f} ms, lost {lost}, "
          f"duplicated {duplicated}")  # fmt: skip


def check(db_url: str, probes: list[Probe]) -> tuple[int, int, int]:
    """Acknowledged measurements missing from the database; rows beyond one per key."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TEMPORARY TABLE acked (uid VARCHAR(32) PRIMARY KEY)"))
        run = {p.name: p.run["run_id"] for p in probes}
        wanted = [{"u": stored_uid(p.name, run[p.name], i)} for p in probes for i in p.acked]
        conn.execute(text("INSERT INTO acked VALUES (:u)"), wanted)
        lost = conn.execute(text(
            "SELECT count(*) FROM acked a LEFT JOIN measurements m ON m.uid = a.uid "
            "WHERE m.id IS NULL")).scalar_one()  # fmt: skip
        total, distinct = conn.execute(text(
            "SELECT count(*), count(DISTINCT (r.uploaded_by, m.uid)) FROM measurements m "
            "JOIN runs r ON r.run_id = m.run_id")).one()  # fmt: skip
    engine.dispose()
    return int(lost), int(total) - int(distinct), int(total)


if __name__ == "__main__":
    main()
