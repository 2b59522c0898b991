"""PostgreSQL's monthly partitions on a real server (tests/servers/postgres.py): revision 0005p
converts a 0004r database with its rows, ids, evidence and views; new databases are made
partitioned; uploads and a probe's own writes make the months they need, two at once
included; a broken clock's rows go to DEFAULT; prune drops a whole month of evidence."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text

from probe.collector import ingest, outbox, wire
from probe.store import Database, open_database
from probe.store import partitions as parts
from probe.store.migrations import HEAD
from probe.store.retention import PRUNED, prune
from probe.store.schema import alembic_config
from probe.store.views import NAMES as VIEW_NAMES
from tests.probe.test_store import BLOCKED, OBS, THROTTLED, record, run_info

SEP = dt.datetime(2026, 9, 10, 8, 0, tzinfo=dt.UTC)
OCT = dt.datetime(2026, 10, 20, 9, 0, tzinfo=dt.UTC)
NOV = dt.datetime(2026, 11, 29, 1, 2, 3, 456000, tzinfo=dt.UTC)
BROKEN = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 6, 1, tzinfo=dt.UTC))


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    e = create_engine(postgres_url)
    yield e
    e.dispose()


def rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def children(engine: Engine, table: str) -> set[str]:
    """The partitions of a table (pg_inherits)."""
    found = rows(
        engine,
        "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST(:t AS regclass)",
        t=table,
    )
    return {r[0] for r in found}


def where_rows_are(engine: Engine, table: str) -> dict[str, int]:
    """Partition name -> how many of the table's rows it holds."""
    found = rows(engine, f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1")
    return dict(found)  # type: ignore[arg-type]


def months(*names: str) -> set[str]:
    return {f"{t}_{n}" for t in ("measurements",) for n in (*names, "default")}


SNAPSHOT = {
    "measurements": "SELECT id, run_id, verdict, measured_at, reason, uid FROM measurements "
    "ORDER BY id",
    "evidence": "SELECT measurement_id, data::text FROM evidence ORDER BY measurement_id",
    **{v: f"SELECT * FROM {v} ORDER BY 1, 2, 3" for v in VIEW_NAMES},
}


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    return {name: rows(engine, sql) for name, sql in SNAPSHOT.items()}


def fill_0004r(engine: Engine) -> None:
    """A 0004r database (migrated there by Alembic) with a run's rows in three months and
    one dated 1970, and the id sequence moved past the last row (ids a rollback used)."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0004r")
        conn.execute(
            text(
                "INSERT INTO runs (run_id, started_at, status, probe_version, vantage_name, "
                "asn, country, settings) VALUES (:r, :t, 'completed', '0', 'home', 9198, 'KZ', "
                "'{}')"
            ),
            {"r": "a" * 32, "t": SEP},
        )
        for i, at in enumerate([SEP, SEP, OCT, NOV, NOV, BROKEN[0]]):
            mid = conn.execute(
                text(
                    "INSERT INTO measurements (run_id, service, category, input, verdict, "
                    "detail, rule, reason, measured_at, duration_ms) VALUES (:r, 'telegram', "
                    "'messaging', 'https://t.example/', :v, 'd', 'r', 'why', :t, 1.0) "
                    "RETURNING id"
                ),
                {"r": "a" * 32, "v": "blocked" if i % 2 else "accessible", "t": at},
            ).scalar_one()
            if i != 2:  # one without evidence
                conn.execute(
                    text("INSERT INTO evidence VALUES (:m, CAST(:d AS jsonb))"),
                    {"m": mid, "d": f'{{"n": {i}}}'},
                )
        conn.execute(text("SELECT setval('measurements_id_seq', 40)"))


def test_revision_0005p_partitions_a_0004r_database_keeping_every_row(
    engine: Engine, postgres_url: str
) -> None:
    fill_0004r(engine)
    before = snapshot(engine)
    assert before["blocked_inputs"]  # the views have rows to keep
    db = open_database(postgres_url)  # upgrades it to the head
    try:
        # 0006c after it changes nothing on PostgreSQL but meta.schema_version (4).
        assert db.upgrade is not None and db.upgrade.revision == HEAD == "0006c"
        assert snapshot(engine) == before
        assert children(engine, "measurements") == months("y2026m09", "y2026m10", "y2026m11")
        assert where_rows_are(engine, "measurements") == {
            "measurements_y2026m09": 2, "measurements_y2026m10": 1,
            "measurements_y2026m11": 2, "measurements_default": 1,
        }  # fmt: skip
        assert where_rows_are(engine, "evidence") == {
            "evidence_y2026m09": 2, "evidence_y2026m11": 2, "evidence_default": 1,
        }  # fmt: skip
        # The sequence carries on from where it was, not from the highest id.
        info = run_info()
        db.begin_run(info)
        assert db.record(record(info.run_id, BLOCKED, measured_at=NOV, observations=OBS)) == 41
    finally:
        db.close()
    # And back: 0004r's plain tables, every row as it was.
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0004r")
    assert children(engine, "measurements") == set()
    after = snapshot(engine)
    assert after["measurements"][:-1] == before["measurements"]
    assert after["evidence"][:-1] == before["evidence"]
    assert rows(engine, "SELECT nextval('measurements_id_seq')") == [(42,)]


def test_a_new_database_is_partitioned_with_defaults(engine: Engine, postgres_url: str) -> None:
    open_database(postgres_url).close()
    for table in parts.PARTITIONED:
        assert children(engine, table) == {f"{table}_default"}
    keys = rows(
        engine,
        "SELECT c.relname, pg_get_constraintdef(k.oid) FROM pg_constraint AS k "
        "JOIN pg_class AS c ON c.oid = k.conrelid WHERE k.contype IN ('p', 'f') "
        "AND c.relname IN ('measurements', 'evidence') AND k.conparentid = 0",
    )
    assert set(keys) >= {
        ("measurements", "PRIMARY KEY (id, measured_at)"),
        ("evidence", "PRIMARY KEY (measurement_id, measured_at)"),
        ("evidence", "FOREIGN KEY (measurement_id, measured_at) "
                     "REFERENCES measurements(id, measured_at) ON DELETE CASCADE"),
    }  # fmt: skip
    indexes = rows(engine, "SELECT indexname FROM pg_indexes WHERE tablename = 'measurements'")
    assert {"ix_measurements_interference", "ix_measurements_uid"} <= {r[0] for r in indexes}


def probe_upload(path: Path, times: list[dt.datetime]) -> wire.Upload:
    """What a probe sends: its SQLite rows (made by the store) as the collector parses them."""
    db = open_database(str(path))
    try:
        info = run_info(started_at=times[0])
        db.begin_run(info)
        for i, at in enumerate(times):
            db.record(record(info.run_id, (BLOCKED, THROTTLED)[i % 2], measured_at=at,
                             observations=OBS))  # fmt: skip
        db.finish_run(info.run_id, "completed", {}, finished_at=times[-1])
        batch = outbox.next_batch(db, 1000)
    finally:
        db.close()
    body = wire.encode(batch.runs, batch.measurements)
    return wire.parse(wire.decode(body, "gzip", 1 << 26), 10_000)


def test_uploads_make_their_months_stay_idempotent_and_keep_broken_clocks(
    postgres_url: str, engine: Engine, tmp_path: Path
) -> None:
    upload = probe_upload(tmp_path / "p.sqlite", [SEP, OCT, NOV, *BROKEN])
    db = open_database(postgres_url)
    try:
        assert ingest.store(db, "probe-a", upload) == ingest.Stored(5, 0)
        assert ingest.store(db, "probe-a", upload) == ingest.Stored(0, 5)  # a retry
    finally:
        db.close()
    assert children(engine, "measurements") == months("y2026m09", "y2026m10", "y2026m11")
    # 1970 and 2100: stored, in DEFAULT, with their evidence.
    for table in parts.PARTITIONED:
        assert where_rows_are(engine, table)[f"{table}_default"] == 2
    assert rows(engine, "SELECT count(*), count(DISTINCT uid) FROM measurements") == [(5, 5)]


def test_the_sqlalchemy_path_of_ingest_targets_the_same_key(
    postgres_url: str, engine: Engine, tmp_path: Path
) -> None:
    """ingest's portable insert (a trial collector's SQLite) is right on PostgreSQL too."""
    upload = probe_upload(tmp_path / "p.sqlite", [SEP, NOV])
    db = open_database(postgres_url)
    try:
        ingest.store(db, "probe-a", upload)
        again = [
            {**{k: v for k, v in m.items() if k not in ("evidence", "id")},
             "uid": ingest.stored_uid("probe-a", m["run_id"], m["id"]),
             "run_id": ingest.stored_id("probe-a", m["run_id"])}
            for m in upload.measurements
        ]  # fmt: skip
        with db.engine.begin() as conn:
            assert ingest._write_portable(conn, again, {}) == 0
    finally:
        db.close()
    assert rows(engine, "SELECT count(*) FROM evidence") == [(2,)]


def test_two_connections_making_the_same_new_month_both_succeed(
    postgres_url: str, engine: Engine
) -> None:
    open_database(postgres_url).close()
    month = dt.date(2026, 7, 1)
    barrier = threading.Barrier(4)

    def make(_: int) -> None:
        own = create_engine(postgres_url)  # a connection, a cache, a process of its own
        try:
            barrier.wait(timeout=30)
            with own.begin() as conn:
                parts.create_months(conn, [month, dt.date(2026, 8, 1)])
        finally:
            own.dispose()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(make, range(4)))  # raises if any failed
    assert children(engine, "evidence") == {
        "evidence_default", "evidence_y2026m07", "evidence_y2026m08",
    }  # fmt: skip


def test_a_month_made_later_takes_its_rows_out_of_default(
    postgres_url: str, engine: Engine
) -> None:
    db = open_database(postgres_url)
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(days=70)  # a clock two months fast
    try:
        info = run_info()
        db.begin_run(info)
        mid = db.record(record(info.run_id, BLOCKED, measured_at=ahead, observations=OBS))
        assert where_rows_are(engine, "measurements") == {"measurements_default": 1}
        # Seventy days later that month is made: the row moves into it, evidence and all.
        with engine.begin() as conn:
            parts.create_months(conn, [parts.month_of(ahead)])
        name = parts.partition_name("evidence", parts.month_of(ahead))
        assert where_rows_are(engine, "evidence") == {name: 1}
        detail = db.get_measurement(mid)
        assert detail is not None and detail.evidence["verdict_evidence"]["answers"] == ["10.0.0.1"]
    finally:
        db.close()


def test_prune_drops_whole_months_of_evidence_and_keeps_the_verdicts(
    postgres_url: str, engine: Engine
) -> None:
    db = open_database(postgres_url)
    try:
        info = run_info(started_at=SEP)
        db.begin_run(info)
        times = [SEP, SEP, OCT, NOV - dt.timedelta(days=25), NOV]
        for at in times:
            db.record(record(info.run_id, BLOCKED, measured_at=at, observations=OBS))
        dry = prune(db, dt.timedelta(days=30), dry_run=True, now=NOV + dt.timedelta(days=10))
        assert dry.evidence_deleted == 4
        done = prune(db, dt.timedelta(days=30), now=NOV + dt.timedelta(days=10))
    finally:
        db.close()
    assert done.evidence_deleted == 4 and done.measurements_kept == 5
    # September and October went as tables; November's old row one by one.
    assert children(engine, "evidence") == {"evidence_default", "evidence_y2026m11"}
    assert where_rows_are(engine, "evidence") == {"evidence_y2026m11": 1}
    reasons = rows(engine, "SELECT reason FROM measurements ORDER BY id")
    assert [r[0] for r in reasons] == [PRUNED] * 4 + [BLOCKED.reason]
    # A late row of a pruned month still finds a home (its evidence partition made again).
    late = open_database(postgres_url)
    try:
        again = run_info(uuid.uuid4().hex, SEP)
        late.begin_run(again)
        late.record(record(again.run_id, BLOCKED, measured_at=SEP, observations=OBS))
    finally:
        late.close()
    assert where_rows_are(engine, "evidence")["evidence_y2026m09"] == 1


def test_sqlite_is_not_partitioned(tmp_path: Path) -> None:
    """Revision 0005p is nothing on SQLite: the same tables, rowid ids."""
    path = tmp_path / "results.sqlite"
    db: Database = open_database(str(path))
    try:
        info = run_info()
        db.begin_run(info)
        assert db.record(record(info.run_id, BLOCKED, measured_at=NOV)) == 1
    finally:
        db.close()
    sqlite = create_engine(f"sqlite:///{path}")
    try:
        columns = rows(sqlite, "SELECT name FROM pragma_table_info('evidence')")
        assert [c[0] for c in columns] == ["measurement_id", "data"]
    finally:
        sqlite.dispose()


README = Path(__file__).resolve().parents[2] / "README.md"


def archive_statements() -> list[str]:
    """The README's SQL that detaches and drops a month, statement by statement."""
    text_ = README.read_text(encoding="utf-8")
    start = text_.index("```sql\nALTER TABLE evidence DETACH") + len("```sql\n")
    block = re.sub(r"--.*", "", text_[start : text_.index("```", start)])
    return [s.strip() for s in block.split(";") if s.strip()]


def test_the_readmes_archive_steps_detach_and_drop_a_month(
    postgres_url: str, engine: Engine, tmp_path: Path
) -> None:
    """README, "Growing past one PostgreSQL": export the month, detach it, drop it."""
    db = open_database(postgres_url)
    try:
        info = run_info(started_at=SEP)
        db.begin_run(info)
        for at in (SEP, OCT):
            db.record(record(info.run_id, BLOCKED, measured_at=at, observations=OBS))
        first, next_first = (dt.datetime(2026, m, 1, tzinfo=dt.UTC) for m in (9, 10))
        month = list(db.iter_export_rows(first, None, None, next_first))
        assert [r.measured_at for r in month] == [SEP]
    finally:
        db.close()
    with engine.begin() as conn:
        for sql in archive_statements():
            conn.exec_driver_sql(sql.replace("y2026m01", "y2026m09"))
    assert children(engine, "measurements") == months("y2026m10")
    assert rows(engine, "SELECT measured_at FROM measurements") == [(OCT,)]


def test_a_month_dropped_by_hand_is_made_again_for_a_late_row(
    postgres_url: str, engine: Engine
) -> None:
    """What a process knows of the months expires: an archived month a late upload needs is
    made again (within KNOWN_FOR_S), not left to DEFAULT for as long as the collector runs."""
    db = open_database(postgres_url)
    try:
        info = run_info(started_at=SEP)
        db.begin_run(info)
        db.record(record(info.run_id, BLOCKED, measured_at=SEP, observations=OBS))
        with engine.begin() as conn:
            for sql in archive_statements():
                conn.exec_driver_sql(sql.replace("y2026m01", "y2026m09"))
        assert "measurements_y2026m09" not in children(engine, "measurements")
        parts.ensure(db.engine, [SEP])  # known a moment ago: no query, nothing made
        assert "measurements_y2026m09" not in children(engine, "measurements")
        later = time.monotonic() + parts.KNOWN_FOR_S
        parts.ensure(db.engine, [SEP], clock=lambda: later)
        assert "measurements_y2026m09" in children(engine, "measurements")
        db.record(record(info.run_id, BLOCKED, measured_at=SEP, observations=OBS))
        assert where_rows_are(engine, "measurements") == {"measurements_y2026m09": 1}
    finally:
        db.close()
