"""The results store on real SQLite files: round trips, opening checks, lookups, the writer."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import json
import os
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, event, text

from measurements.observations import DNSObservation, DNSResponse, TCPObservation, to_jsonable
from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
from probe.store import (
    SCHEMA_VERSION,
    AsyncWriter,
    Database,
    StoreError,
    default_database_path,
    open_database,
)
from probe.store.compressed_json import unpack
from probe.store.migrations import HEAD
from probe.store.owner import sweep_lock
from probe.store.schema import alembic_config
from probe.store.views import NAMES as VIEW_NAMES
from tests.mounts import resize, tmpfs

T0 = dt.datetime(2026, 11, 29, 1, 2, 3, 456000, tzinfo=dt.UTC)
ALMATY = dt.timezone(dt.timedelta(hours=5))

ANSWER = DNSResponse("NOERROR", ("10.0.0.1",), (), 300, 12.5)
DNS_OBS = DNSObservation(
    "web.telegram.org", "A", "udp", "192.0.2.53:53", None, "NOERROR", ("10.0.0.1",), (ANSWER,), 12.5
)
TCP_OBS = TCPObservation("149.154.167.99", 443, "connection_reset", None, 40.0)
OBS = (DNS_OBS, TCP_OBS)
ACCESSIBLE = Verdict("accessible", None, "ok", "all.ok", "Every step succeeded.")
BOGON = "The resolver answered a private address; DoH gave a public one."
EVIDENCE = {"answers": ("10.0.0.1",), "control": ["149.154.167.99"]}
BLOCKED = Verdict("blocked", "dns", "dns.bogon", "dns.bogon", BOGON, evidence=EVIDENCE)
SLOW = "Goodput 12 kbps with the target SNI, 9000 kbps with an innocuous one."
THROTTLED = Verdict("throttled", "tls", "throttle.sni", "throttle.sni", SLOW, {}, 12.0, 9000.0)


def at(seconds: float) -> dt.datetime:
    """A moment some seconds after T0."""
    return T0 + dt.timedelta(seconds=seconds)


def run_info(run_id: str | None = None, started_at: dt.datetime = T0) -> RunInfo:
    """A run as the scheduler would begin it."""
    return RunInfo(
        run_id=run_id or uuid.uuid4().hex,
        started_at=started_at,
        vantage=Vantage(name="home-almaty", asn=9198, country="KZ"),
        probe_version="0.1.0",
        settings={"resolver": "system", "doh": ("https://dns.example/dns-query",)},
    )


def record(
    run_id: str,
    verdict: Verdict = ACCESSIBLE,
    service: str = "telegram",
    measured_at: dt.datetime = T0,
    observations: tuple[Any, ...] = (),
) -> MeasurementRecord:
    """A measurement record as the classifier would hand it over."""
    return MeasurementRecord(
        run_id=run_id,
        service=service,
        category="messaging",
        input="https://web.telegram.org/",
        verdict=verdict,
        measured_at=measured_at,
        duration_ms=123.5,
        observations=observations,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where a test's database file goes."""
    return tmp_path / "data" / "results.sqlite"


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    """A fresh database in a real SQLite file."""
    database = open_database(str(db_path))
    yield database
    database.close()


def test_round_trip_of_a_run(db: Database, db_path: Path) -> None:
    info = run_info()
    db.begin_run(info)
    first = db.record(record(info.run_id, ACCESSIBLE, observations=(DNS_OBS,)))
    second = db.record(record(info.run_id, BLOCKED, measured_at=at(1), observations=OBS))
    third = db.record(record(info.run_id, THROTTLED, measured_at=at(2)))
    db.finish_run(info.run_id, "completed", {"inputs": 3}, finished_at=at(60))
    db.close()

    reopened = open_database(str(db_path))  # from the file, not from any cache
    run = reopened.get_run(info.run_id)
    assert run is not None
    assert (run.status, run.started_at, run.finished_at) == ("completed", T0, at(60))
    assert run.vantage == Vantage(name="home-almaty", asn=9198, country="KZ")
    assert run.settings == {"resolver": "system", "doh": ["https://dns.example/dns-query"]}
    assert (run.probe_version, run.counts, run.measurements) == ("0.1.0", {"inputs": 3}, 3)

    rows = reopened.measurements_of_run(info.run_id)
    assert [r.id for r in rows] == [first, second, third]
    assert [r.verdict for r in rows] == ["accessible", "blocked", "throttled"]
    assert (rows[1].layer, rows[1].detail, rows[1].rule) == ("dns", "dns.bogon", "dns.bogon")
    assert (rows[0].layer, rows[0].duration_ms, rows[1].reason) == (None, 123.5, BOGON)
    assert (rows[2].throughput_kbps, rows[2].baseline_kbps) == (12.0, 9000.0)

    detail = reopened.get_measurement(second)
    assert detail is not None
    assert detail.row == rows[1]
    assert detail.evidence == {
        "verdict_evidence": {"answers": ["10.0.0.1"], "control": ["149.154.167.99"]},
        "observations": to_jsonable(OBS),
    }
    assert [o["kind"] for o in detail.evidence["observations"]] == [
        "DNSObservation",
        "TCPObservation",
    ]
    assert detail.evidence["observations"][1]["failure"] == "connection_reset"
    assert reopened.get_measurement(third + 100) is None
    reopened.close()


def test_measured_at_comes_back_aware_utc(db: Database, db_path: Path) -> None:
    info = run_info()
    db.begin_run(info)
    almaty_time = dt.datetime(2026, 11, 29, 6, 2, 3, 456789, tzinfo=ALMATY)
    mid = db.record(record(info.run_id, measured_at=almaty_time))
    db.close()

    with sqlite3.connect(db_path) as raw:  # stored as UTC, not as local time
        (stored,) = raw.execute("SELECT measured_at FROM measurements").fetchone()
    assert stored.startswith("2026-11-29 01:02:03.456789")

    detail = open_database(str(db_path)).get_measurement(mid)
    assert detail is not None
    assert detail.row.measured_at == almaty_time
    assert detail.row.measured_at.tzinfo is dt.UTC


def test_naive_measured_at_is_refused(db: Database) -> None:
    info = run_info()
    db.begin_run(info)
    with pytest.raises(StoreError, match="naive"):
        db.record(record(info.run_id, measured_at=T0.replace(tzinfo=None)))
    assert db.measurements_of_run(info.run_id) == []


def test_sqlite_pragmas_on_every_connection(db: Database, db_path: Path) -> None:
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    with sqlite3.connect(db_path) as raw:  # WAL is a property of the file, seen by anyone
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),)


def test_sqlite_url_target_and_missing_parents(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "url.sqlite"
    db = open_database(f"sqlite:///{path}")
    db.begin_run(run_info())
    db.close()
    assert path.is_file()
    assert len(open_database(str(path)).list_runs()) == 1


def test_default_path_is_in_the_user_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if not str(default_database_path()).startswith(str(tmp_path)):
        pytest.skip("platformdirs ignores XDG_DATA_HOME on this platform")
    assert default_database_path().name == "results.sqlite"
    open_database(None).close()
    assert default_database_path().is_file()


def test_schema_version_mismatch(db_path: Path) -> None:
    """Without an Alembic revision only versions 1 and 2 (made before Alembic) are known."""
    open_database(str(db_path)).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("DROP TABLE alembic_version")
        raw.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    for read_only in (False, True):
        with pytest.raises(StoreError) as caught:
            open_database(str(db_path), read_only=read_only)
        message = str(caught.value)
        assert str(db_path) in message
        assert "has schema version 7 and no Alembic revision" in message


def test_foreign_sqlite_database_with_our_table_names(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE runs (x INTEGER)")
    with pytest.raises(StoreError, match="no schema version"):
        open_database(str(path))


def _left_behind(directory: Path) -> list[str]:
    """Every file and directory under a directory, for 'nothing was created' checks."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_path_under_a_regular_file(tmp_path: Path) -> None:
    # Fails for root as well: no one can make a directory inside a file.
    (tmp_path / "file.txt").write_text("not a directory\n")
    target = tmp_path / "file.txt" / "db.sqlite"
    with pytest.raises(StoreError, match=str(target)):
        open_database(str(target))
    assert _left_behind(tmp_path) == ["file.txt"]


def test_new_directories_are_removed_when_opening_fails(tmp_path: Path) -> None:
    # The directories can be made, but SQLite cannot create a file with so long a name.
    target = tmp_path / "new" / "deeper" / ("x" * 300 + ".sqlite")
    with pytest.raises(StoreError, match="cannot open database"):
        open_database(str(target))
    assert _left_behind(tmp_path) == []


@contextlib.contextmanager
def _unwritable(directory: Path) -> Iterator[None]:
    """Make a directory unwritable even for root (root writes through mode bits)."""
    if os.geteuid() == 0:
        # The immutable attribute stops root too; ext4 and most local filesystems have it.
        subprocess.run(["chattr", "+i", str(directory)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
    else:
        directory.chmod(0o500)
        try:
            yield
        finally:
            directory.chmod(0o700)


def test_unwritable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    with _unwritable(locked):
        with pytest.raises(StoreError, match="not writable"):
            open_database(str(locked / "db.sqlite"))
        assert _left_behind(locked) == []


def test_directory_as_target(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        open_database(str(tmp_path))


def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    content = "these are my notes, not a database\n" * 200
    path.write_text(content)
    with pytest.raises(StoreError, match=f"{path} is not an SQLite database"):
        open_database(str(path))
    assert path.read_text() == content  # untouched
    assert _left_behind(tmp_path) == ["notes.sqlite"]  # no -wal or -shm beside it


def test_empty_file_becomes_a_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    path.touch()
    open_database(str(path)).close()
    assert path.read_bytes().startswith(b"SQLite format 3\x00")


def test_get_run_by_prefix(db: Database) -> None:
    one = "abcdef11" + "0" * 24
    two = "abcdef22" + "0" * 24
    db.begin_run(run_info(one))
    db.begin_run(run_info(two))

    found = db.get_run("abcdef1")
    assert found is not None and found.run_id == one
    found = db.get_run("ABCDEF22")  # as typed from a report, in capitals
    assert found is not None and found.run_id == two
    found = db.get_run(one)
    assert found is not None and found.run_id == one
    with pytest.raises(StoreError, match="ambiguous"):
        db.get_run("abcdef")
    assert db.get_run("012345") is None
    assert db.get_run("abcdef%") is None  # a LIKE wildcard is not a prefix
    assert db.get_run("abcde_11") is None
    with pytest.raises(StoreError, match="shorter than 6"):
        db.get_run("abcde")


def test_list_runs_counts_per_verdict(db: Database) -> None:
    old, new, empty = (run_info(started_at=at(3600 * h)) for h in (0, 1, 2))
    for info in (old, new, empty):
        db.begin_run(info)
    for verdict in (ACCESSIBLE, ACCESSIBLE, BLOCKED):
        db.record(record(old.run_id, verdict))
    for verdict in (THROTTLED, BLOCKED):
        db.record(record(new.run_id, verdict))
    db.finish_run(old.run_id, "completed", {"inputs": 3})
    db.finish_run(new.run_id, "interrupted")

    runs = db.list_runs()
    assert [r.run_id for r in runs] == [empty.run_id, new.run_id, old.run_id]  # newest first
    last, middle, first = runs
    assert (first.verdicts, first.measurements) == ({"accessible": 2, "blocked": 1}, 3)
    assert (middle.verdicts, middle.measurements) == ({"throttled": 1, "blocked": 1}, 2)
    assert (middle.status, middle.counts) == ("interrupted", None)
    assert (last.verdicts, last.measurements, last.status) == ({}, 0, "running")
    assert last.finished_at is None
    assert [r.run_id for r in db.list_runs(limit=1)] == [empty.run_id]


def test_bad_writes_become_store_errors(db: Database) -> None:
    with pytest.raises(StoreError):
        db.record(record(uuid.uuid4().hex))  # no such run: the foreign key holds
    with pytest.raises(StoreError, match="no run"):
        db.finish_run(uuid.uuid4().hex, "completed")
    with pytest.raises(ValueError, match="status"):
        db.finish_run(uuid.uuid4().hex, "exploded")
    info = run_info()
    db.begin_run(info)
    with pytest.raises(StoreError):
        db.begin_run(info)  # the same run twice
    db.close()
    with pytest.raises(StoreError, match="closed"):
        db.list_runs()


def test_in_memory_database() -> None:
    db = open_database("sqlite://")
    info = run_info()
    db.begin_run(info)
    mid = db.record(record(info.run_id, BLOCKED, observations=(TCP_OBS,)))
    detail = db.get_measurement(mid)
    assert detail is not None and detail.row.verdict == "blocked"
    assert [r.run_id for r in db.list_runs()] == [info.run_id]
    db.close()


@pytest.mark.parametrize("target", ["file", "memory"])
async def test_async_writer_from_many_tasks(target: str, tmp_path: Path) -> None:
    db = open_database(str(tmp_path / "w.sqlite") if target == "file" else "sqlite://")
    threads: set[int] = set()

    def note_thread(*_args: Any) -> None:
        threads.add(threading.get_ident())

    event.listen(db.engine, "before_cursor_execute", note_thread)
    writer = AsyncWriter(db)
    info = run_info()
    await writer.begin_run(info)

    async def measure(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 7))  # interleave like real measurements
        rec = record(info.run_id, service=f"svc{i}", measured_at=at(i / 1000))
        return await writer.record(rec)

    ids = await asyncio.gather(*(measure(i) for i in range(60)))
    await writer.finish_run(info.run_id, "completed", {"inputs": 60})
    await writer.close()
    await writer.close()  # twice is harmless

    assert len(set(ids)) == 60
    assert len(threads) == 1
    assert threading.get_ident() not in threads  # never the event loop's thread
    with pytest.raises(RuntimeError, match="closed"):
        await writer.record(record(info.run_id))

    if target == "file":
        reread = open_database(str(tmp_path / "w.sqlite"))
        run = reread.get_run(info.run_id)
        assert run is not None
        assert (run.status, run.measurements, run.counts) == ("completed", 60, {"inputs": 60})
        services = {r.service for r in reread.measurements_of_run(info.run_id)}
        assert services == {f"svc{i}" for i in range(60)}
        reread.close()


async def test_async_writer_keeps_order_of_submission(tmp_path: Path) -> None:
    writer = AsyncWriter(open_database(str(tmp_path / "o.sqlite")))
    info = run_info()
    begin = asyncio.ensure_future(writer.begin_run(info))
    # Submitted after begin_run in the same loop iteration: must run after it (the foreign key).
    writes = [asyncio.ensure_future(writer.record(record(info.run_id))) for _ in range(5)]
    await begin
    ids = await asyncio.gather(*writes)
    assert ids == sorted(ids)
    await writer.close()


async def test_a_cancelled_caller_does_not_drop_its_write(tmp_path: Path) -> None:
    writer = AsyncWriter(open_database(str(tmp_path / "c.sqlite")))
    info = run_info()
    await writer.begin_run(info)
    tasks = [asyncio.ensure_future(writer.record(record(info.run_id))) for _ in range(20)]
    await asyncio.sleep(0)  # every write is submitted; the last ones still wait in the queue
    tasks[-1].cancel()  # the sweep is interrupted before that write lands
    with pytest.raises(asyncio.CancelledError):
        await tasks[-1]
    await asyncio.gather(*tasks[:-1])
    await writer.close()
    assert len(open_database(str(tmp_path / "c.sqlite")).measurements_of_run(info.run_id)) == 20


async def test_records_queued_together_share_a_transaction_and_keep_their_ids(
    tmp_path: Path,
) -> None:
    """Records that arrive while a write is queued are written with it, in one transaction;
    each caller still gets the id of its own row, with its own evidence."""
    db = open_database(str(tmp_path / "b.sqlite"))
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda conn: commits.append(1))
    writer = AsyncWriter(db)
    info = run_info()
    await writer.begin_run(info)
    before = len(commits)
    # Submitted in one loop iteration: the first is queued, the others join it.
    tasks = [
        asyncio.ensure_future(
            writer.record(record(info.run_id, service=f"svc{i}", observations=(DNS_OBS,) * i))
        )
        for i in range(30)
    ]
    ids = await asyncio.gather(*tasks)
    assert len(commits) - before < 30 / 3  # a transaction per batch, not per record
    assert ids == sorted(ids) and len(set(ids)) == 30
    for i, mid in enumerate(ids):
        detail = db.get_measurement(mid)
        assert detail is not None
        assert detail.row.service == f"svc{i}"
        assert len(detail.evidence["observations"]) == i
    await writer.close()


async def test_records_arriving_one_by_one_still_share_transactions(tmp_path: Path) -> None:
    """A sweep's records come a few milliseconds apart, never two at once: they wait a
    little for each other rather than commit one by one."""
    db = open_database(str(tmp_path / "l.sqlite"))
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda conn: commits.append(1))
    writer = AsyncWriter(db)
    info = run_info()
    await writer.begin_run(info)
    before = len(commits)

    async def measure(i: int) -> int:
        await asyncio.sleep(0.002 * i)  # each after the last one's write could be done
        return await writer.record(record(info.run_id, service=f"svc{i}"))

    ids = await asyncio.gather(*(measure(i) for i in range(40)))
    assert len(commits) - before < 40 / 4
    assert len(set(ids)) == 40
    await writer.close()


async def test_a_record_that_cannot_be_stored_does_not_take_its_batch_with_it(
    tmp_path: Path,
) -> None:
    """One record of a batch refused (here its run does not exist; in a sweep, the disk
    filling up halfway): the others are stored and only its caller gets the error."""
    db = open_database(str(tmp_path / "p.sqlite"))
    writer = AsyncWriter(db)
    info = run_info()
    await writer.begin_run(info)
    runs = [info.run_id] * 5 + [uuid.uuid4().hex] + [info.run_id] * 4
    tasks = [
        asyncio.ensure_future(writer.record(record(run, service=f"svc{i}")))
        for i, run in enumerate(runs)
    ]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await writer.close()
    assert isinstance(results[5], StoreError)
    assert all(isinstance(r, int) for i, r in enumerate(results) if i != 5)
    stored = open_database(str(tmp_path / "p.sqlite")).measurements_of_run(info.run_id)
    assert sorted(r.service for r in stored) == sorted(f"svc{i}" for i in range(10) if i != 5)


async def test_a_call_after_waiting_records_is_written_after_them(tmp_path: Path) -> None:
    """finish_run (or any call) queued while records wait for their batch sends them first:
    the run is never marked finished before its last measurements are in."""
    db = open_database(str(tmp_path / "f.sqlite"))
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2].split()[0]))
    writer = AsyncWriter(db)
    info = run_info()
    await writer.begin_run(info)
    pending = [asyncio.ensure_future(writer.record(record(info.run_id))) for _ in range(3)]
    await asyncio.sleep(0)  # the records wait in their batch
    statements.clear()
    await writer.finish_run(info.run_id, "completed", {"inputs": 3})
    assert all(task.done() for task in pending)
    assert statements[-1] == "UPDATE" and "INSERT" in statements[:-1]
    await writer.close()
    run = open_database(str(tmp_path / "f.sqlite")).get_run(info.run_id)
    assert run is not None and (run.status, run.measurements) == ("completed", 3)


# --- Who owns a "running" run; schema 1 -------------------------------------------------


def test_a_run_abandoned_by_its_sweep_is_aborted_by_the_next_sweep(db_path: Path) -> None:
    """The lock of a closed (or dead) sweep is gone: the next sweep marks its run aborted."""
    with sweep_lock(str(db_path), "probe run") as lock:
        first = open_database(str(db_path), sweep=lock)
        run_id = uuid.uuid4().hex
        first.begin_run(run_info(run_id))
        other = open_database(str(db_path))  # a writer that is no sweep (prune) marks nothing
        assert other.get_run(run_id).status == "running"  # type: ignore[union-attr]
        other.close()
        reader = open_database(str(db_path), read_only=True)
        assert reader.get_run(run_id).status == "running"  # type: ignore[union-attr]
        reader.close()
        first.close()  # the sweep goes without finishing its run, as kill -9 would leave it
    reader = open_database(str(db_path), read_only=True)
    try:  # a reader says what happened, and writes nothing
        assert reader.get_run(run_id).status == "aborted"  # type: ignore[union-attr]
        assert reader.list_runs()[0].status == "aborted"
    finally:
        reader.close()
    open_database(str(db_path)).close()  # nor does a writer that holds no sweep lock
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("SELECT status FROM runs").fetchall() == [("running",)]
    with sweep_lock(str(db_path), "probe run") as lock:
        writer = open_database(str(db_path), sweep=lock)
        try:
            assert writer.get_run(run_id).status == "aborted"  # type: ignore[union-attr]
        finally:
            writer.close()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("SELECT status FROM runs").fetchall() == [("aborted",)]


def test_finished_runs_are_never_marked_aborted(db: Database, db_path: Path) -> None:
    info = run_info()
    db.begin_run(info)
    db.finish_run(info.run_id, "failed", {})
    db.close()
    again = open_database(str(db_path))
    try:
        assert again.get_run(info.run_id).status == "failed"  # type: ignore[union-attr]
    finally:
        again.close()


V1_RUNS = """CREATE TABLE runs (
    run_id VARCHAR(32) NOT NULL, started_at DATETIME NOT NULL, finished_at DATETIME,
    status VARCHAR(16) NOT NULL, probe_version VARCHAR(64) NOT NULL,
    vantage_name VARCHAR(128), network_type VARCHAR(32), asn BIGINT, country VARCHAR(2),
    settings JSON NOT NULL, counts JSON, PRIMARY KEY (run_id),
    CONSTRAINT ck_runs_status
        CHECK (status IN ('running', 'completed', 'interrupted', 'timed_out', 'offline'))
)"""


def _make_version_1(db_path: Path) -> str:
    """A database as schema 1 left it (runs' old CHECK), holding one run and a measurement."""
    db = open_database(str(db_path))
    info = run_info()
    db.begin_run(info)
    db.record(record(info.run_id, BLOCKED))
    db.finish_run(info.run_id, "completed", {"blocked": 1})
    db.close()
    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.begin() as conn:  # back to a measurements table (revision 0006c's)
            command.downgrade(alembic_config(conn), "0005p")
    finally:
        engine.dispose()
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as raw:
        raw.execute("PRAGMA foreign_keys = OFF")
        raw.execute("PRAGMA legacy_alter_table = ON")
        raw.execute("BEGIN")
        for view in VIEW_NAMES:  # revision 0004v's: schema 1 had none
            raw.execute(f"DROP VIEW {view}")
        raw.execute("ALTER TABLE runs RENAME TO runs_new")
        raw.execute("DROP INDEX ix_runs_started_at")
        raw.execute(V1_RUNS)
        raw.execute("CREATE INDEX ix_runs_started_at ON runs (started_at)")
        columns = "run_id, started_at, finished_at, status, probe_version, vantage_name, " \
            "network_type, asn, country, settings, counts"  # fmt: skip
        raw.execute(f"INSERT INTO runs SELECT {columns} FROM runs_new")
        raw.execute("DROP TABLE runs_new")
        # Schema 1 had neither Alembic nor the columns revision 0002 adds.
        raw.execute("DROP TABLE alembic_version")
        raw.execute("ALTER TABLE measurements DROP COLUMN throughput_bytes")
        raw.execute("ALTER TABLE measurements DROP COLUMN throughput_address")
        for table in ("daemon_groups", "daemon_sweeps", "outages"):  # revision 0003d's
            raw.execute(f"DROP TABLE {table}")
        raw.execute("DROP INDEX ix_measurements_interference")  # revision 0004r's
        # Revision 0004c's (SQLite drops no indexed column: the indexes first).
        raw.execute("DROP TABLE collector_tokens")
        raw.execute("DROP INDEX ix_measurements_uid")
        raw.execute("ALTER TABLE measurements DROP COLUMN uid")
        raw.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        # Schema 1 kept evidence as TEXT JSON (compression at rest came later).
        for mid, data in raw.execute("SELECT measurement_id, data FROM evidence").fetchall():
            text = json.dumps(unpack(data))
            raw.execute("UPDATE evidence SET data = ? WHERE measurement_id = ?", (text, mid))
        raw.execute("COMMIT")
        with pytest.raises(sqlite3.IntegrityError):  # schema 1 cannot say "failed"
            raw.execute("UPDATE runs SET status = 'failed'")
    return info.run_id


def test_schema_1_is_read_as_it_is_and_migrated_by_a_writer(db_path: Path) -> None:
    run_id = _make_version_1(db_path)
    before = db_path.read_bytes()
    reader = open_database(str(db_path), read_only=True)
    try:
        assert reader.get_run(run_id).verdicts == {"blocked": 1}  # type: ignore[union-attr]
    finally:
        reader.close()
    assert db_path.read_bytes() == before  # reading migrates nothing
    writer = open_database(str(db_path))
    try:
        run = writer.get_run(run_id)
        assert run is not None and run.status == "completed" and run.verdicts == {"blocked": 1}
        info = run_info()
        writer.begin_run(info)
        writer.finish_run(info.run_id, "failed", {})  # what schema 1 refused
        assert writer.get_run(info.run_id).status == "failed"  # type: ignore[union-attr]
    finally:
        writer.close()
    with contextlib.closing(sqlite3.connect(db_path)) as raw:
        assert raw.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
        assert "runs_v1" not in names and "ix_runs_started_at" in names
        sql = "SELECT sql FROM sqlite_master WHERE name = 'results'"
        (ddl,) = raw.execute(sql).fetchone()
        assert "REFERENCES runs (run_key)" in ddl
    # The writer kept a copy of schema 1 beside it before upgrading.
    backup = db_path.with_name(f"{db_path.name}.pre-upgrade-{HEAD}.bak")
    with contextlib.closing(sqlite3.connect(backup)) as raw:
        assert raw.execute("SELECT value FROM meta").fetchall() == [("1",)]
        assert raw.execute("SELECT run_id, status FROM runs").fetchall() == [(run_id, "completed")]


def test_read_only_open_of_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(StoreError, match="is not an SQLite database"):
        open_database(str(path), read_only=True)
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(StoreError, match="is not an SQLite database"):
        open_database(str(empty), read_only=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.sqlite", "notes.txt"]


def test_the_lock_file_reserve_lets_a_full_disk_record_how_a_run_ended(tmp_path: Path) -> None:
    """On a real full disk a write fails, yet finish_run gets the reserve's room and succeeds."""
    with tmpfs(tmp_path / "small", "384k") as small, sweep_lock(str(small / "r.sqlite"), "t") as lk:
        db = open_database(str(small / "r.sqlite"), sweep=lk)
        try:
            lock = small / "r.sqlite-lock"
            assert lock.stat().st_blocks * 512 >= 64 * 1024  # allocated, not sparse
            info = run_info()
            db.begin_run(info)
            fd = os.open(small / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                with pytest.raises(OSError) as full:
                    while True:  # every block the file system has left
                        os.write(fd, b"\0" * 512)
            finally:
                os.close(fd)
            assert full.value.errno == errno.ENOSPC
            with pytest.raises(StoreError, match="disk is full"):
                db.record(record(info.run_id, BLOCKED))
            db.finish_run(info.run_id, "failed", {})
            assert db.get_run(info.run_id).status == "failed"  # type: ignore[union-attr]
            # The reserve was spent on it; the holder's line stays.
            assert lock.stat().st_size < 512 and lock.read_bytes().startswith(b'{"pid":')
        finally:
            db.close()


def test_records_refused_by_a_full_disk_are_stored_once_there_is_room(tmp_path: Path) -> None:
    """A commit that fails on a real full disk leaves nothing behind: once room is made, the
    same records (their inputs new to the database) are stored. A daemon goes on after the
    volunteer frees space, rather than failing on ids of rows that were never written."""
    with tmpfs(tmp_path / "small", "384k") as small:
        db = open_database(str(small / "r.sqlite"))
        try:
            info = run_info()
            db.begin_run(info)
            refused: list[MeasurementRecord] = []
            for b in range(1000):  # bounded: 384 KiB holds far fewer
                batch = [record(info.run_id, service=f"s{b}-{i}") for i in range(16)]
                try:
                    db.record_many(batch)
                except StoreError as exc:
                    assert "disk is full" in str(exc)
                    refused = batch
                    break
            assert refused and db.measurements_of_run(info.run_id)
            before = len(db.measurements_of_run(info.run_id))
            resize(small, "1m")
            ids = db.record_many(refused)
            assert len(set(ids)) == 16
            assert len(db.measurements_of_run(info.run_id)) == before + 16
        finally:
            db.close()


async def test_a_batch_the_database_refuses_is_tried_once_more_not_once_per_record(
    tmp_path: Path,
) -> None:
    """The database locked past the busy timeout by another writer (the database fails, not
    a record): after the batch, one record alone is tried, not each of them, which would cost
    that timeout again for every record."""
    path = tmp_path / "k.sqlite"
    db = open_database(str(path))
    inserts: list[str] = []
    event.listen(
        db.engine,
        "before_cursor_execute",
        lambda *a: inserts.append(a[2]) if a[2].startswith("INSERT") else None,
    )
    writer = AsyncWriter(db)
    info = run_info()
    await writer.begin_run(info)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # holds the write lock throughout
        inserts.clear()
        tasks = [
            asyncio.ensure_future(writer.record(record(info.run_id, service=f"svc{i}")))
            for i in range(10)
        ]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        other.execute("ROLLBACK")
    assert all(isinstance(r, StoreError) and "locked" in str(r) for r in results), results
    assert len(inserts) == 2  # the batch's first insert, then the first record's alone
    await writer.close()
