"""SQLite's compact shape (probe/store/compact.py, revision 0006c) on real files: what is
written reads back through the measurements view exactly as the table held it, the revision
converts a 0005p file in place keeping every row, id and evidence and downgrades again, and
the store's time-range reads use the index of results.measured_at."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, select

from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
from probe.collector import ingest
from probe.store import SCHEMA_VERSION, compact, open_database
from probe.store.models import Measurement
from probe.store.queries import export_statement
from probe.store.schema import alembic_config
from tests.probe.test_migrations import DUMP, query, schema_of
from tests.probe.test_partitions import probe_upload

T0 = dt.datetime(2026, 11, 29, 18, 2, 3, 456789, tzinfo=dt.UTC)
COLUMNS = [c.name for c in Measurement.columns]


def _upgrade(path: Path, target: str, *, down: bool = False) -> None:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            config = alembic_config(conn)
            if down:
                command.downgrade(config, target)
                return
            names = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
            if "meta" in names and "alembic_version" not in names:
                command.stamp(config, "0001")  # the fixture: schema 2, before Alembic
            command.upgrade(config, target)
    finally:
        engine.dispose()


@pytest.fixture
def at_0005p(tmp_path: Path) -> Path:
    """The schema-2 fixture brought to 0005p, plus a row with microseconds and a uid."""
    path = tmp_path / "results.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as raw:
        raw.executescript(DUMP.read_text(encoding="utf-8"))
    _upgrade(path, "0005p")
    with contextlib.closing(sqlite3.connect(path)) as raw, raw:
        run_id = raw.execute("SELECT run_id FROM runs ORDER BY started_at LIMIT 1").fetchone()[0]
        raw.execute(
            "INSERT INTO measurements (id, run_id, service, category, input, verdict, layer,"
            " detail, rule, reason, measured_at, duration_ms, throughput_kbps, baseline_kbps,"
            " throughput_bytes, throughput_address, uid) VALUES (40, ?, 's', 'c', 'x:443',"
            " 'blocked', 'tcp', 'tcp.reset', 'tcp.reset', 'Reset.', '2026-11-30 01:02:03.000001',"
            " 1.5, 2.5, 3.5, 4, '192.0.2.1', 'u1')",
            (run_id,),
        )
    return path


def _everything(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    names = ", ".join(COLUMNS)
    return {
        "measurements": query(path, f"SELECT {names} FROM measurements ORDER BY id"),
        "evidence": query(path, "SELECT * FROM evidence ORDER BY measurement_id"),
        "runs": query(path, "SELECT run_id, started_at, status FROM runs ORDER BY run_id"),
        "blocked_inputs": query(path, "SELECT * FROM blocked_inputs ORDER BY measurement_id"),
        "latest_verdicts": query(path, "SELECT * FROM latest_verdicts ORDER BY service"),
    }


def test_revision_0006c_keeps_every_row_id_and_evidence_and_downgrades(
    at_0005p: Path, tmp_path: Path
) -> None:
    before = _everything(at_0005p)
    assert len(before["measurements"]) == 9 and before["evidence"]
    shape_0005p = schema_of(at_0005p)
    _upgrade(at_0005p, "head")
    assert _everything(at_0005p) == before  # the view gives what the table held
    assert query(at_0005p, "SELECT count(*) FROM results") == [(9,)]
    assert query(at_0005p, "SELECT value FROM meta WHERE key = 'schema_version'") == [("4",)]
    assert query(at_0005p, "PRAGMA foreign_key_check") == []
    new = tmp_path / "new.sqlite"
    open_database(str(new)).close()
    assert schema_of(at_0005p) == schema_of(new)
    # Evidence follows its result: deleted with it (ON DELETE CASCADE, through the rename).
    with contextlib.closing(sqlite3.connect(at_0005p)) as raw, raw:
        raw.execute("PRAGMA foreign_keys = ON")
        raw.execute("DELETE FROM results WHERE id = 4")
        assert raw.execute("SELECT * FROM evidence WHERE measurement_id = 4").fetchall() == []
        raw.rollback()
    _upgrade(at_0005p, "0005p", down=True)
    assert _everything(at_0005p) == before
    assert schema_of(at_0005p) == shape_0005p
    assert query(at_0005p, "SELECT value FROM meta WHERE key = 'schema_version'") == [("3",)]


def _record(run_id: str, at: dt.datetime, **verdict: Any) -> MeasurementRecord:
    v = Verdict(
        verdict.get("verdict", "throttled"), verdict.get("layer", "tls"), "throttle.sni",
        "throughput.sni_slower", "Slower with the SNI.", {"k": 1}, 120.5, 8000.25, "192.0.2.7",
    )  # fmt: skip
    return MeasurementRecord(run_id, "video", "streaming", "https://v.example/", v, at, 12.5,
                             throughput_bytes=3_000_001)  # fmt: skip


def test_what_is_written_reads_back_through_the_view_to_the_microsecond(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    db = open_database(str(path))
    try:
        run_id = uuid.uuid4().hex
        db.begin_run(RunInfo(run_id, T0, Vantage(name="home"), "0", {}))
        ids = db.record_many([
            _record(run_id, T0),
            _record(run_id, T0 + dt.timedelta(microseconds=1), verdict="accessible", layer=None),
            _record(run_id, dt.datetime(2026, 12, 1, tzinfo=dt.UTC)),
        ])  # fmt: skip
        rows = db.measurements_of_run(run_id)
        exported = list(db.iter_export_rows(since=T0, until=T0 + dt.timedelta(seconds=1)))
    finally:
        db.close()
    assert [r.id for r in rows] == ids
    assert [r.measured_at for r in rows] == [
        T0,
        T0 + dt.timedelta(microseconds=1),
        dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
    ]
    assert [r.measurement_id for r in exported] == ids[:2]
    assert [r.measured_at for r in exported] == [T0, T0 + dt.timedelta(microseconds=1)]
    got = query(path, f"SELECT {', '.join(COLUMNS)} FROM measurements ORDER BY id")
    assert got[0] == (
        ids[0], run_id, "video", "streaming", "https://v.example/", "throttled", "tls",
        "throttle.sni", "throughput.sni_slower", "Slower with the SNI.",
        "2026-11-29 18:02:03.456789", 12.5, 120.5, 8000.25, 3_000_001, "192.0.2.7", None,
    )  # fmt: skip
    assert got[1][6] is None and got[1][10] == "2026-11-29 18:02:03.456790"
    assert got[2][10] == "2026-12-01 00:00:00.000000"  # SQLAlchemy's text: always 6 digits
    assert query(path, "SELECT count(*) FROM inputs") == [(1,)]  # one input, once
    assert query(path, "SELECT run_key FROM runs") == [(1,)]
    assert query(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]


def test_the_view_has_the_models_columns_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    open_database(str(path)).close()
    assert [r[1] for r in query(path, "PRAGMA table_info(measurements)")] == COLUMNS
    with contextlib.closing(sqlite3.connect(path)) as raw:
        # What a probe that knew schema version 3 would do: SQLite refuses it.
        with pytest.raises(sqlite3.OperationalError, match="cannot modify measurements"):
            raw.execute("DELETE FROM measurements")


def test_a_rolled_back_write_leaves_no_remembered_id(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    db = open_database(str(path))
    try:
        run_id = uuid.uuid4().hex
        db.begin_run(RunInfo(run_id, T0, Vantage(name="home"), "0", {}))
        with db.engine.connect() as conn:
            with conn.begin() as tx:
                compact.physical_rows(conn, [{"run_id": run_id, "service": "a",
                                              "category": "b", "input": "c"}])  # fmt: skip
                tx.rollback()
        db.record(_record(run_id, T0))  # ids made afresh: not the rolled-back ones
    finally:
        db.close()
    assert query(path, "PRAGMA foreign_key_check") == []
    assert query(path, "SELECT input_id, run FROM results") == [(1, 1)]


def test_time_ranges_read_the_index_of_results(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    open_database(str(path)).close()
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            stmts = [
                export_statement(T0, None, None, T0 + dt.timedelta(days=1), conn),
                select(Measurement.c.verdict).where(
                    *compact.measured_between(compact.is_compact(conn), T0, None)
                ),
            ]
            for stmt in stmts:
                sql = str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))
                plan = " ".join(r[3] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
                assert "ix_results_measured_at" in plan, plan
    finally:
        engine.dispose()


def test_a_trial_collector_on_sqlite_stores_uploads_once_and_deletes_them(
    tmp_path: Path,
) -> None:
    times = [T0, T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=2)]
    upload = probe_upload(tmp_path / "p.sqlite", times)
    path = tmp_path / "collector.sqlite"
    db = open_database(str(path))
    try:
        assert ingest.store(db, "probe-a", upload) == ingest.Stored(3, 0)
        assert ingest.store(db, "probe-a", upload) == ingest.Stored(0, 3)  # a retry
        assert query(path, "SELECT count(*), count(DISTINCT uid) FROM measurements") == [(3, 3)]
        assert query(path, "SELECT measured_at FROM measurements ORDER BY id") == [
            (t.strftime("%Y-%m-%d %H:%M:%S.%f"),) for t in times
        ]
        assert query(path, "SELECT count(*) FROM evidence") == [(3,)]
        assert ingest.delete_mine(db, "probe-a") == 3
        for table in ("results", "evidence", "runs"):
            assert query(path, f"SELECT count(*) FROM {table}") == [(0,)]
        # Sent again: the run is made again with a new key, not the one remembered.
        assert ingest.store(db, "probe-a", upload) == ingest.Stored(3, 0)
    finally:
        db.close()
    assert query(path, "PRAGMA foreign_key_check") == []
    assert query(path, "SELECT count(*) FROM measurements") == [(3,)]
