"""Exports stream: 100,000 measurements with their evidence go out in flat memory.

The rows are bulk-inserted into a real SQLite file through the store's own tables (the
evidence compressed as the store keeps it), then exported through the real query. Each export
runs in its own process, which reports its peak RSS: the whole table costs about what its
last fifth does, though its output is five times larger.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from measurements.observations import DNSObservation, TCPObservation, to_jsonable
from probe.classify.verdict import RunInfo, Vantage
from probe.store import open_database
from probe.store.inserts import insert_rows
from probe.store.models import Evidence

ROWS = 100_000
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
RUN = "cccccccc" + "3" * 24
REPO = Path(__file__).resolve().parents[2]
# The last 20,000 rows (one a second): the baseline a whole-table export is compared with,
# large enough to fill whole batches and row groups, so only growth with rows would differ.
LAST_FIFTH = (T0 + dt.timedelta(seconds=ROWS - ROWS // 5)).isoformat()
OBSERVATIONS = to_jsonable((
    DNSObservation("x.example", "A", "udp", "192.0.2.53:53", None, "NOERROR", ("198.51.100.7",),
                   (), 3.0),
    TCPObservation("198.51.100.7", 443, "connection_reset", None, 20.0),
))  # fmt: skip


def _fill(path: Path) -> None:
    db = open_database(str(path))
    try:
        db.begin_run(RunInfo(RUN, T0, Vantage("v", "home", 9198, "KZ"), "0.1.0", {}))
        rows: list[dict[str, Any]] = [
            {"id": i + 1, "run_id": RUN, "service": f"s{i % 50}", "category": "social",
             "input": f"https://s{i % 50}.example/{i}", "verdict": "blocked", "layer": "tcp",
             "detail": "tcp.reset", "rule": "tcp.reset", "reason": "Reset " * 10,
             "measured_at": T0 + dt.timedelta(seconds=i), "duration_ms": 100.0,
             "throughput_kbps": None, "baseline_kbps": None}
            for i in range(ROWS)
        ]  # fmt: skip
        evidence = {
            "verdict_evidence": {"failure": "connection_reset"},
            "observations": OBSERVATIONS,
        }
        with db.begin("fill") as conn:
            insert_rows(conn, rows)
            conn.execute(
                insert(Evidence), [{"measurement_id": i + 1, "data": evidence} for i in range(ROWS)]
            )
    finally:
        db.close()


def _peak_rss_kib(db: Path, *extra: str) -> tuple[int, int]:
    """Run ``probe export`` in a fresh process; its output's size and its peak RSS (KiB)."""
    code = (
        "import sys\n"
        "from probe.cli import main\n"
        f"status = main(['export', '--db', {str(db)!r}, *{list(extra)!r}])\n"
        "sys.stdout.flush()\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest).
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
        "print(hwm[0].split()[1], file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryFile() as out:
        done = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=subprocess.PIPE,
                              env=env, timeout=600, check=False)  # fmt: skip
        size = out.seek(0, os.SEEK_END)
    assert done.returncode == 0, done.stderr
    return size, int(done.stderr.decode().split()[-1])


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("streaming") / "big.sqlite"
    _fill(path)
    return path


def test_an_ooni_export_of_100k_measurements_stays_in_flat_memory(big: Path) -> None:
    path = big
    small_size, small_rss = _peak_rss_kib(path, "--format", "ooni", "--since", LAST_FIFTH)
    size, rss = _peak_rss_kib(path, "--format", "ooni")
    assert size > 4 * small_size > 0  # 100,000 measurements against 20,000
    assert size > 150 * 2**20  # holding the output, or every row, would show in the RSS
    assert rss - small_rss < 40 * 1024, f"{small_rss} KiB for {ROWS // 5} rows, {rss} for {ROWS}"


def test_a_parquet_export_of_100k_measurements_stays_in_flat_memory(
    big: Path, tmp_path: Path
) -> None:
    path = big
    _, small_rss = _peak_rss_kib(path, "--format", "parquet", "--since", LAST_FIFTH,
                                 "-o", str(tmp_path / "small.parquet"))  # fmt: skip
    _, rss = _peak_rss_kib(path, "--format", "parquet", "-o", str(tmp_path / "big.parquet"))
    assert (tmp_path / "big.parquet").stat().st_size > (tmp_path / "small.parquet").stat().st_size
    assert rss - small_rss < 40 * 1024, f"{small_rss} KiB for {ROWS // 5} rows, {rss} for {ROWS}"
