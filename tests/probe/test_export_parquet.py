"""``probe export --format parquet`` and ``--outages``: typed columns that pyarrow, pandas and
DuckDB read as they are, written atomically; the outage windows as JSONL and CSV."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from measurements.observations import TCPObservation
from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
from probe.cli import main
from probe.store import Database, open_database, parquet
from probe.store.daemon_state import close_outages, open_outage
from probe.store.export import EXPORT_COLUMNS, OUTAGE_COLUMNS
from tests.prerequisites import missing

T0 = dt.datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=dt.UTC)
RUN_A = "aaaaaaaa" + "1" * 24
RUN_B = "bbbbbbbb" + "2" * 24
OK = Verdict("accessible", None, "ok", "all.ok", "Every step succeeded.")
SLOW = Verdict(
    "throttled", "tls", "throttle.sni", "throttle.sni", "=1+1 a small fraction",
    throughput_kbps=12.5, baseline_kbps=8000.0,
)  # fmt: skip
REPO = Path(__file__).resolve().parents[2]


def _record(run_id: str, service: str, verdict: Verdict, minutes: int) -> MeasurementRecord:
    return MeasurementRecord(
        run_id=run_id, service=service, category="social", input=f"https://{service}.example/",
        verdict=verdict, measured_at=T0 + dt.timedelta(minutes=minutes), duration_ms=250.0,
        observations=(TCPObservation("198.51.100.7", 443, None, 20.0, 20.0),),
    )  # fmt: skip


@pytest.fixture
def db_path(tmp_path: Path) -> Iterator[Path]:
    """Run A declares its vantage (ASN 9198), run B declares nothing (ASN null)."""
    path = tmp_path / "results.sqlite"
    database: Database = open_database(str(path))
    database.begin_run(RunInfo(RUN_A, T0, Vantage("home-almaty", "home", 9198, "KZ"), "0.1.0", {}))
    database.begin_run(RunInfo(RUN_B, T0, Vantage(), "0.1.0", {}))
    database.record(_record(RUN_A, "twitter", OK, 0))
    database.record(_record(RUN_B, "telegram", SLOW, 5))
    database.record(_record(RUN_A, "telegram", OK, 10))
    out = T0 + dt.timedelta(hours=1)
    open_outage(database, "home-almaty", out, "sweep", "abcd1234")
    close_outages(database, "home-almaty", out + dt.timedelta(minutes=30))
    open_outage(database, "home-almaty", out + dt.timedelta(hours=2), "sweep", None)
    database.close()
    yield path


def _parquet(db: Path, out: Path, *extra: str) -> int:
    return main(["export", "--db", str(db), "--format", "parquet", "-o", str(out), *extra])


def test_parquet_columns_are_typed(db_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "export.parquet"
    assert _parquet(db_path, out) == 0
    table = pq.read_table(out)
    assert table.column_names == list(EXPORT_COLUMNS)
    types = {f.name: f.type for f in table.schema}
    assert types["asn"] == pa.int64() and types["measurement_id"] == pa.int64()
    assert types["measured_at"] == pa.timestamp("ms", tz="UTC")
    assert types["verdict"] == pa.dictionary(pa.int32(), pa.string())
    assert types["duration_ms"] == pa.float64() and types["reason"] == pa.string()
    rows = table.to_pylist()
    assert [r["service"] for r in rows] == ["twitter", "telegram", "telegram"]
    assert [r["asn"] for r in rows] == [9198, None, 9198]
    assert rows[0]["measured_at"] == T0.replace(microsecond=456000)
    assert rows[1]["throughput_kbps"] == 12.5 and rows[0]["throughput_kbps"] is None
    assert rows[1]["reason"] == "=1+1 a small fraction"  # no CSV guard in a typed file
    assert not list(tmp_path.glob(".probe-export-*"))  # the temporary file became the output


def test_pandas_reads_asn_as_nullable_integers(db_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "export.parquet"
    assert _parquet(db_path, out) == 0
    frame = pd.read_parquet(out)
    assert str(frame["asn"].dtype) == "Int64"  # not float64 with NaN
    assert frame["asn"].isna().tolist() == [False, True, False]
    assert frame["asn"].iloc[0] == 9198
    assert str(frame["measured_at"].dtype) == "datetime64[ms, UTC]"
    assert frame["verdict"].tolist() == ["accessible", "throttled", "accessible"]


def test_duckdb_reads_it_directly(db_path: Path, tmp_path: Path) -> None:
    try:
        import duckdb
    except ImportError:
        missing("duckdb is not installed (pip install duckdb)")
    out = tmp_path / "export.parquet"
    assert _parquet(db_path, out) == 0
    got = duckdb.sql(
        f"SELECT service, asn, verdict FROM read_parquet('{out}') ORDER BY measured_at"
    ).fetchall()
    assert got == [("twitter", 9198, "accessible"), ("telegram", None, "throttled"),
                   ("telegram", 9198, "accessible")]  # fmt: skip


def test_many_rows_stream_into_several_row_groups(tmp_path: Path) -> None:
    database = open_database(str(tmp_path / "one.sqlite"))
    try:
        database.begin_run(RunInfo(RUN_A, T0, Vantage(asn=9198), "0.1.0", {}))
        database.record(_record(RUN_A, "twitter", OK, 0))
        row = next(database.iter_export_rows())
    finally:
        database.close()
    total = parquet.ROW_GROUP * 2 + 5
    rows = (dataclasses.replace(row, measurement_id=i) for i in range(total))  # a stream
    out = tmp_path / "many.parquet"
    assert parquet.write_parquet(rows, str(out)) == total
    meta = pq.ParquetFile(out).metadata
    assert (meta.num_row_groups, meta.num_rows) == (3, total)
    ids = pq.read_table(out, columns=["measurement_id"]).column(0).to_pylist()
    assert ids == list(range(total))


def test_an_empty_export_is_a_valid_file_with_the_schema(db_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty.parquet"
    assert _parquet(db_path, out, "--service", "nobody") == 0
    table = pq.read_table(out)
    assert table.num_rows == 0 and table.column_names == list(EXPORT_COLUMNS)


def test_parquet_needs_a_file_and_refuses_what_it_cannot_hold(
    db_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--db", str(db_path), "--format", "parquet"]) == 2
    assert "--output" in capsys.readouterr().err
    for extra in ("--services", "--outages"):
        assert _parquet(db_path, tmp_path / "x.parquet", extra) == 2
        assert extra in capsys.readouterr().err
    assert not list(tmp_path.glob("*.parquet"))


def test_without_pyarrow_parquet_is_a_clear_error_and_writes_nothing(
    db_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x.parquet"
    # None in sys.modules is how Python itself says a module cannot be imported.
    code = (
        "import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None\n"
        "from probe.cli import main\n"
        f"sys.exit(main(['export', '--db', {str(db_path)!r}, '--format', 'parquet', "
        f"'-o', {str(out)!r}]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "pyarrow" in done.stderr and "parquet" in done.stderr
    assert not out.exists() and not list(tmp_path.glob(".probe-export-*"))


def test_outages_as_jsonl_and_csv(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["export", "--db", str(db_path), "--outages"]) == 0
    windows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [list(w) for w in windows] == [list(OUTAGE_COLUMNS)] * 2
    assert windows[0] == {
        "vantage_name": "home-almaty", "started_at": "2026-11-29T02:02:03.456Z",
        "ended_at": "2026-11-29T02:32:03.456Z", "detected_by": "sweep", "network": "abcd1234",
    }  # fmt: skip
    assert windows[1]["ended_at"] is None  # still out
    assert main(["export", "--db", str(db_path), "--outages", "--format", "csv",
                 "--since", "2026-11-29T03:00:00Z"]) == 0  # fmt: skip
    parsed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [p["ended_at"] for p in parsed] == [""]  # the ended one is before --since
    assert main(["export", "--db", str(db_path), "--outages", "--run", RUN_A]) == 2


def test_reason_is_the_last_column_and_csv_guards_it(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["export", "--db", str(db_path), "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][-1] == "reason" and rows[0][:-1] == list(EXPORT_COLUMNS[:-1])
    assert [r[-1] for r in rows[1:]] == [
        "Every step succeeded.", "'=1+1 a small fraction", "Every step succeeded.",
    ]  # fmt: skip
