"""Report benchmark: ``probe report`` over a generated year of 1,000,000 measurements.

1. Generates the database on SQLite (sqlite3 executemany) and on a real PostgreSQL server
   (tests.servers.postgres.running_postgres; COPY), its schema made by the probe itself
   (open_database), no evidence rows (the report never reads evidence). A year (2026), 20
   vantages (5 in Kazakhstan), each sweeping one input of each bundled service (targets/)
   about every 4 hours, at random times; 1% of results inconclusive at random. Planted:
   - an evening throttle: youtube and facebook at every KZ vantage are throttled
     (throttle.sni, 20-80 kbit/s against about 8000) from 18:00 to 24:00 UTC, March to August;
   - a blocking episode: telegram at every KZ vantage is blocked (tls.reset) March 10-19.
2. Times the real CLI in a subprocess (text output, what a person runs): a one-month,
   one-country report (KZ, March) on each database, and the whole year on each (the "year"
   figure is the slower); peak RSS of the report processes (wait4's ru_maxrss).
3. Runs the same reports as JSON and checks the planted patterns were found in each: the
   throttle's hours (18:00-24:00) for youtube at a KZ vantage, and the blocking episode's
   first and last day and dominant detail for telegram.

Run from the repository root:  python bench/report.py
Last line: ``report: sqlite N.N s, postgresql N.N s, year N.N s, rss N MB, patterns K/K``.
Goals: under 2 s each month report, under 10 s the year, RSS under 300 MB, every pattern.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe.store import open_database, partitions  # noqa: E402
from probe.store.inserts import insert_rows  # noqa: E402
from targets.load import load_default  # noqa: E402
from tests.servers.postgres import running_postgres  # noqa: E402

MEASUREMENTS = 1_000_000
YEAR = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
YEAR_END = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
KZ = [(f"kz-{i:02d}", 9198 if i < 3 else 21299, "KZ") for i in range(5)]
OTHERS = [
    (f"{cc.lower()}-{i:02d}", 64500 + 3 * n + i, cc)
    for n, cc in enumerate(("RU", "DE", "TR", "US", "BY"))
    for i in range(3)
]
VANTAGES = KZ + OTHERS
THROTTLED = ("youtube", "facebook")
THROTTLE = (dt.datetime(2026, 3, 1, tzinfo=dt.UTC), dt.datetime(2026, 9, 1, tzinfo=dt.UTC))
BLOCKED = "telegram"
BLOCK = (dt.datetime(2026, 3, 10, tzinfo=dt.UTC), dt.datetime(2026, 3, 20, tzinfo=dt.UTC))
MONTH = ("2026-03-01", "2026-04-01")
RUN_COLUMNS = ("run_id", "started_at", "finished_at", "status", "probe_version",
               "vantage_name", "asn", "country", "settings")  # fmt: skip
M_COLUMNS = (
    "run_id", "service", "category", "input", "verdict", "layer", "detail", "rule", "reason",
    "measured_at", "duration_ms", "throughput_kbps", "baseline_kbps",
)  # fmt: skip


def _verdict(rng: random.Random, service: str, cc: str, at: dt.datetime) -> tuple[Any, ...]:
    """verdict, layer, detail, rule, throughput_kbps, baseline_kbps."""
    if cc == "KZ" and service == BLOCKED and BLOCK[0] <= at < BLOCK[1]:
        return "blocked", "tls", "tls.reset", "tls.sni_filter", None, None
    if cc == "KZ" and service in THROTTLED and THROTTLE[0] <= at < THROTTLE[1] and at.hour >= 18:
        return ("throttled", "tls", "throttle.sni", "throttle.sni", rng.uniform(20, 80),
                rng.uniform(7000, 9000))  # fmt: skip
    if rng.random() < 0.01:
        return "inconclusive", None, "site.down", "site.down", None, None
    if service in THROTTLED:
        return "accessible", None, "ok", "all.ok", rng.uniform(5000, 9000), rng.uniform(7000, 9000)
    return "accessible", None, "ok", "all.ok", None, None


def generate() -> tuple[list[tuple[Any, ...]], Iterator[tuple[Any, ...]]]:
    """The runs, and a generator of the measurements (about MEASUREMENTS of them)."""
    # Each sweep measures one input of each service (its first): sweeps every 4 hours or so,
    # as a daemon's groups would, rather than all 127 inputs once a day.
    inputs = [(s.name, s.category, s.inputs()[0].value) for s in load_default().services]
    per_vantage = -(-MEASUREMENTS // len(inputs) // len(VANTAGES))
    step = (YEAR_END - YEAR) / per_vantage
    rng = random.Random(2018)
    runs = []
    for vi, (name, asn, cc) in enumerate(VANTAGES):
        for k in range(per_vantage):
            at = YEAR + step * k + dt.timedelta(seconds=rng.uniform(0, step.total_seconds()))
            at = at.replace(microsecond=0)
            runs.append((f"{vi:04d}{k:028d}", at, at + dt.timedelta(minutes=3), "completed",
                         "bench", name, asn, cc, "{}"))  # fmt: skip

    def measurements() -> Iterator[tuple[Any, ...]]:
        for run_id, at, _, _, _, _, _, cc, _ in runs:
            for n, (service, category, value) in enumerate(inputs):
                moment = at + dt.timedelta(seconds=n)
                v = _verdict(rng, service, cc, moment)
                yield (run_id, service, category, value, *v[:4], "bench", moment, 50.0, *v[4:])

    return runs, measurements()


def _sqlite_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def fill_sqlite(path: Path) -> int:
    open_database(str(path)).close()  # the schema, at the head, as the probe makes it
    runs, measurements = generate()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    with conn:
        conn.executemany(
            f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * 9)})",
            [(*r[:1], _sqlite_time(r[1]), _sqlite_time(r[2]), *r[3:]) for r in runs],
        )
    conn.close()
    # Through the store (results and inputs behind the measurements view: compact.py), with
    # the ids given so each batch is one executemany.
    db = open_database(str(path))
    count = 0
    try:
        with db.engine.begin() as sa_conn:
            for batch in _batches(measurements, 50_000):
                rows = [
                    {"id": count + i + 1, **dict(zip(M_COLUMNS, m, strict=True))}
                    for i, m in enumerate(batch)
                ]
                insert_rows(sa_conn, rows)
                count += len(batch)
            sa_conn.exec_driver_sql("ANALYZE")
    finally:
        db.close()
    return count


def fill_postgresql(url: str, dsn: str) -> int:
    import psycopg

    db = open_database(url)
    try:  # the year's monthly partitions, as its uploads would have made them
        with db.engine.begin() as conn:
            partitions.create_months(conn, [dt.date(2026, m, 1) for m in range(1, 13)])
    finally:
        db.close()
    runs, measurements = generate()
    count = 0
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY runs ({', '.join(RUN_COLUMNS)}) FROM STDIN") as copy:
                for r in runs:
                    copy.write_row(r)
            with cur.copy(f"COPY measurements ({', '.join(M_COLUMNS)}) FROM STDIN") as copy:
                for m in measurements:
                    copy.write_row(m)
                    count += 1
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return count


def _batches(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_report(db: str, args: Sequence[str]) -> tuple[float, int, str]:
    """Wall time, peak RSS (KB) and stdout of one ``probe report``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out_file = tempfile.TemporaryFile()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "probe", "report", "--db", db, *args],
                            stdout=out_file, env=env, cwd=ROOT)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out_file.seek(0)
    output = out_file.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"probe report {' '.join(args)} exited {proc.returncode}")
    return elapsed, usage.ru_maxrss, output


def patterns(report: dict[str, Any]) -> list[bool]:
    """Whether the throttle's hours and the blocking episode were found."""
    groups = [g for g in report["groups"] if g["vantage"]["country"] == "KZ"]
    hours = any(
        c["verdict"] == "throttled" and c["start_hour"] == 18 and c["end_hour"] == 24
        for g in groups if g["service"] == "youtube" for c in g["concentrations"]
    )  # fmt: skip
    block = [g for g in groups if g["service"] == BLOCKED and g["blocked"]["count"]]
    episode = bool(block) and all(
        g["blocked"]["first"][:10] == "2026-03-10"
        and g["blocked"]["last"][:10] == "2026-03-19"
        and g["dominant_detail"]["detail"] == "tls.reset"
        for g in block
    )
    return [hours, episode]


def measure(label: str, db: str, found: list[bool], rss: list[int]) -> tuple[float, float]:
    """The month and year reports on one database: their wall times (text output)."""
    month = ["--country", "KZ", "--since", MONTH[0], "--until", MONTH[1]]
    times = []
    for name, args in (("month", month), ("year", [])):
        elapsed, peak, text = run_report(db, args)
        _, peak_json, out = run_report(db, [*args, "--format", "json"])
        rss += [peak, peak_json]
        checks = patterns(json.loads(out))
        found += checks
        times.append(elapsed)
        print(f"{label} {name}: {elapsed:.2f} s, {len(text.splitlines())} lines, "
              f"rss {max(peak, peak_json) // 1024} MB, patterns {checks}")  # fmt: skip
    return times[0], times[1]


def main() -> None:
    found: list[bool] = []
    rss: list[int] = []
    work = Path(tempfile.mkdtemp(prefix="probe-bench-report-"))
    os.chmod(work, 0o755)  # world-traversable: the server may run as 'postgres'
    try:
        started = time.perf_counter()
        n = fill_sqlite(work / "year.db")
        print(f"sqlite: {n} measurements generated in {time.perf_counter() - started:.1f} s")
        sqlite_month, sqlite_year = measure("sqlite", str(work / "year.db"), found, rss)
        with running_postgres(work / "pg") as server:
            url = server.create_database("report")
            started = time.perf_counter()
            n = fill_postgresql(url, server.dsn(url.rsplit("/", 1)[1]))
            print(
                f"postgresql: {n} measurements generated in {time.perf_counter() - started:.1f} s"
            )
            pg_month, pg_year = measure("postgresql", url, found, rss)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"report: sqlite {sqlite_month:.1f} s, postgresql {pg_month:.1f} s, "
        f"year {max(sqlite_year, pg_year):.1f} s, rss {max(rss) // 1024} MB, "
        f"patterns {sum(found)}/{len(found)}"
    )


if __name__ == "__main__":
    main()
