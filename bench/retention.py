"""Retention benchmark: the database after a simulated year of hourly sweeps of the bundled list.

1. Shapes: one real ``probe run`` against a loopback world (accessible HTTPS and HTTP pages, a
   bare endpoint, a DNS block, an SNI reset, a throughput test) gives real rows: their
   columns and their evidence JSON.
2. A year: every hour a run of the bundled list's inputs (targets/default.toml), each input
   one measurement row copied from a real row of its verdict (the verdict mix is an
   assumption, below), with the bundled list's own service, category and input, and its
   evidence: the real evidence of that kind, padded with random text to the sizes the issue
   gives (1-3 KB an input, about 19 KB a throughput test) where the loopback one is smaller
   (loopback chains, answers and pages are smaller than real ones). Rows go in day by day,
   in batches, through the real store (its engine, its tables, a file it created, so with
   its pragmas); after each day the store is pruned as the daemon would: retention.prune()
   with the default windows (storage.retention, 30 days; storage.retention_accessible, 7
   days for the evidence of accessible verdicts).
3. Prints the file's size (database and WAL) at the end. By default 120 days are simulated
   (about 3 minutes) and the size is extrapolated to 365 from the growth per day once the
   window is full (from then on only verdict rows accumulate), and the line says so;
   ``--days 365`` simulates the whole year (about 9 minutes).

Run from the repository root:  python bench/retention.py [--days N] [--throughput-per-sweep N]
Traffic stays on 127.0.0.1. Needs about 2 GB free in the temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trustme
from sqlalchemy import insert

from probe.cli import main as probe_main
from probe.config.sections import StorageSettings
from probe.store import open_database
from probe.store.compressed_json import unpack
from probe.store.inserts import insert_rows
from probe.store.models import Evidence, Run
from probe.store.retention import prune
from targets.load import load_default
from tests.servers.dns_server import NXDomain
from tests.servers.tcp_servers import ClosedPort, SNIFilter
from tests.servers.throughput_server import ByteServer
from tests.servers.world import running_world

# What an hourly sweep of the bundled list finds, by share of inputs: an assumption (a
# vantage where a few services are blocked); every verdict row has the same columns.
MIX = {"accessible": 0.85, "blocked": 0.10, "inconclusive": 0.05}
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
GOAL_MB = 200


def sample_rows(tmp: Path) -> dict[str, list[tuple[dict[str, Any], str]]]:
    """Real rows of one loopback sweep, by kind: (columns, evidence JSON text)."""
    ca = trustme.CA(organization_name="Bench Root")
    bundle = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    names = ["ref.test", "ok.test", "nx.test", "sni.test", "tput.test"]
    with running_world(ca, str(bundle), names) as world:
        world.name("nx.test", resolver=NXDomain())
        origin = world.peer(ByteServer(ca, names))
        sni = world.peer(SNIFilter(world.web.https_port, {"sni.test"}, "reset"))
        closed = world.peer(ClosedPort())  # refused to the probe and, without a helper, to
        # every control: inconclusive
        web = world.web
        services = [
            ("ok", [f"https://ok.test:{web.https_port}/", f"http://ok.test:{web.http_port}/"],
             f'endpoints = ["127.0.0.1:{web.http_port}", "127.0.0.1:{closed.port}"]'),
            ("nx", [f"https://nx.test:{web.https_port}/"], ""),
            ("sni", [f"https://sni.test:{sni.port}/"], ""),
            ("tput", [f"https://tput.test:{origin.port}/bytes/2000"],
             f'throughput_url = "https://tput.test:{origin.port}/bytes/4000000"'),
        ]  # fmt: skip
        lines = []
        for name, urls, extra in services:
            lines += ["[[service]]", f'name = "{name}"', 'category = "social"',
                      f"urls = {json.dumps(urls)}", extra]  # fmt: skip
        targets = tmp / "targets.toml"
        targets.write_text("\n".join(lines) + "\n", encoding="utf-8")
        config = world.write_config(
            tmp / "probe.toml", f"https://ref.test:{origin.port}/bytes/1000"
        )
        with config.open("a", encoding="utf-8") as f:
            f.write(f'[throughput]\nreference = ["https://ref.test:{origin.port}/bytes/4000000"]\n')
        db = tmp / "sample.sqlite"
        args = ["run", "--config", str(config), "--targets", str(targets), "--db", str(db)]
        with contextlib.redirect_stdout(io.StringIO()):
            code = probe_main([*args, "--no-progress", "--json"])
        if code != 0:
            raise SystemExit(f"the sample sweep exited {code}")
    kinds: dict[str, list[tuple[dict[str, Any], str]]] = {}
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        query = "SELECT m.*, e.data FROM measurements m JOIN evidence e ON e.measurement_id = m.id"
        for row in conn.execute(query):
            columns = {k: row[k] for k in row.keys() if k not in ("id", "run_id", "data")}
            kind = "throughput" if row["throughput_kbps"] is not None else row["verdict"]
            text = json.dumps(unpack(row["data"]))  # a BLOB: compressed at rest
            kinds.setdefault(kind, []).append((columns, text))
    return kinds


def _padded(data: str, size: int) -> str:
    """The evidence, padded with random text to ``size`` bytes if it is smaller."""
    if len(data) >= size:
        return data
    parsed = json.loads(data)
    parsed["bench_padding"] = os.urandom(max(0, size - len(data) - 24) // 2).hex()
    return json.dumps(parsed)


def _day(
    kinds: dict[str, list[tuple[dict[str, Any], str]]],
    inputs: Sequence[Any],
    day: int,
    next_id: int,
    throughput_per_sweep: int,
    rng: random.Random,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[int]]:
    """A day's rows: 24 runs, their measurements and evidence; and the evidence sizes."""
    runs, measurements, evidence, sizes = [], [], [], []
    verdicts = [v for v in MIX if v in kinds]
    weights = [MIX[v] for v in verdicts]
    for hour in range(24):
        started = START + dt.timedelta(days=day, hours=hour)
        run_id = uuid.uuid4().hex
        runs.append({"run_id": run_id, "started_at": started, "finished_at": started,
                     "status": "completed", "probe_version": "0.1.0", "settings": {},
                     "counts": {"total": len(inputs)}})  # fmt: skip
        timed = set(rng.sample(range(len(inputs)), throughput_per_sweep))
        for i, target in enumerate(inputs):
            kind = "throughput" if i in timed else rng.choices(verdicts, weights)[0]
            columns, data = rng.choice(kinds[kind])
            size = 19_000 if kind == "throughput" else rng.randint(1_000, 3_000)
            text = _padded(data, size)
            sizes.append(len(text))
            measurements.append({**columns, "id": next_id, "run_id": run_id,
                                 "service": target.service, "category": target.category,
                                 "input": target.value,
                                 "measured_at": started + dt.timedelta(seconds=i)})  # fmt: skip
            evidence.append({"measurement_id": next_id, "data": json.loads(text)})
            next_id += 1
    return runs, measurements, evidence, sizes


def _size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _breakdown(path: Path) -> dict[str, int]:
    """Bytes of pages by table and index (SQLite's dbstat): evidence, the verdict rows
    (results and inputs, behind the measurements view; a table of their own before revision
    0006c), their indexes, the rest."""
    with sqlite3.connect(path) as conn:
        pages = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
    rows = ("results", "inputs", "measurements")
    parts = {"evidence": pages.pop("evidence", 0)}
    parts["verdict rows"] = sum(pages.pop(t, 0) for t in rows)
    parts["their indexes"] = sum(v for k, v in pages.items() if any(t in k for t in rows))
    parts["runs and the rest"] = sum(v for k, v in pages.items() if not any(t in k for t in rows))
    return parts


def simulate(args: argparse.Namespace, path: Path, kinds: dict[str, Any]) -> dict[str, Any]:
    """The days of hourly sweeps, each day's rows in one batch, pruned after each day."""
    inputs = load_default().inputs()
    storage = StorageSettings()
    window, accessible = storage.retention_window, storage.accessible_window
    assert window is not None
    db = open_database(str(path))
    rng = random.Random(1)
    next_id, rows, sizes, daily, prune_s = 1, 0, [], [], 0.0
    started = time.monotonic()
    try:
        for day in range(args.days):
            runs, measurements, evidence, day_sizes = _day(
                kinds, inputs, day, next_id, args.throughput_per_sweep, rng
            )
            next_id += len(measurements)
            with db.engine.begin() as conn:
                conn.execute(insert(Run), runs)
                insert_rows(conn, measurements)
                conn.execute(insert(Evidence), evidence)
            rows += len(measurements)
            sizes += day_sizes
            t0 = time.monotonic()
            prune(db, window, accessible_older_than=accessible,
                  now=START + dt.timedelta(days=day + 1), exclusive=True)  # fmt: skip
            prune_s += time.monotonic() - t0
            daily.append(_size(path))
            if day % 30 == 29:
                print(f"  day {day + 1}: {daily[-1] / 1e6:.0f} MB, {rows} verdict rows, "
                      f"{time.monotonic() - started:.0f} s", file=sys.stderr)  # fmt: skip
    finally:
        db.close()
    wall = time.monotonic() - started
    return {"inputs": len(inputs), "rows": rows, "sizes": sizes, "daily": daily,
            "prune_s": prune_s, "wall": wall, "window_days": window.days}  # fmt: skip


def report(args: argparse.Namespace, path: Path, kinds: dict[str, Any], r: dict[str, Any]) -> None:
    """What was simulated, where the bytes are, and the last line."""
    final, parts, days = _size(path), _breakdown(path), args.days
    print(f"inputs per sweep: {r['inputs']} (targets/default.toml), hourly; throughput tests per "
          f"sweep: {args.throughput_per_sweep}; verdict mix {MIX}")  # fmt: skip
    loopback = {k: sum(len(d) for _, d in v) // len(v) for k, v in kinds.items()}
    mean = sum(r["sizes"]) / len(r["sizes"])
    print(f"evidence per input: loopback {loopback} bytes; stored mean {mean:.0f} bytes "
          "(the loopback's, padded to 1-3 KB, 19 KB a throughput test, where smaller)")  # fmt: skip
    storage = StorageSettings()
    print(f"retention {storage.retention} ({storage.retention_accessible} for accessible "
          f"verdicts), pruned daily: {r['prune_s']:.1f} s of "
          f"pruning over {days} days; wall {r['wall']:.0f} s")  # fmt: skip
    verdict_mb = sum(v for k, v in parts.items() if k != "evidence") / 1e6
    where = ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in parts.items())
    print(f"where the bytes are after {days} days: {where}; verdict rows and their indexes "
          f"for a year: {verdict_mb * 365 / days:.0f} MB")  # fmt: skip
    if days >= 365:
        print(f"retention: year db {final / 1e6:.0f} MB (goal {GOAL_MB} MB), "
              f"{r['rows']} verdict rows")  # fmt: skip
        return
    daily, since = r["daily"], r["window_days"] + 4  # a few days past the window
    growth = (daily[-1] - daily[since]) / (days - 1 - since)
    year = final + growth * (365 - days)
    print(f"simulated {days} days ({final / 1e6:.0f} MB, {r['rows']} rows); past the window "
          f"the file grows {growth / 1e6:.2f} MB a day (verdict rows only)")  # fmt: skip
    print(f"retention: year db {year / 1e6:.0f} MB (goal {GOAL_MB} MB), "
          f"{r['inputs'] * 24 * 365} verdict rows (extrapolated from {days} days)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # 120 days (about 3 minutes): past the 90-day window, then extrapolated; 365: the whole
    # year (about 9 minutes and 2 GB of temporary disk).
    parser.add_argument("--days", type=int, default=120, help="days to simulate (default 120)")
    parser.add_argument("--throughput-per-sweep", type=int, default=2,
                        help="throughput tests per hourly sweep (default 2: about what the "
                        "50 MB daily budget allows)")  # fmt: skip
    args = parser.parse_args()
    window = StorageSettings().retention_window
    if window is not None and args.days < 365 and args.days < window.days + 10:
        parser.error(f"--days: at least {window.days + 10} (past the window) or 365")
    with tempfile.TemporaryDirectory(prefix="probe-retention-") as tmpdir:
        tmp = Path(tmpdir)
        kinds = sample_rows(tmp)
        path = tmp / "year.sqlite"
        report(args, path, kinds, simulate(args, path, kinds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
