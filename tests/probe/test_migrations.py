"""Schema migrations on real SQLite files: a database made before Alembic is upgraded in place
after a backup, read as it is by a read-only open, and gives the answers it gave before; a
newer revision is refused; the revisions and the models describe the same schema."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import sqlite3
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
from probe.store import SCHEMA_VERSION, Database, StoreError, open_database
from probe.store.budgets import bytes_since, past_rates
from probe.store.migrations import HEAD, REVISIONS
from probe.store.partitions import metadata_for
from probe.store.schema import MIGRATIONS, alembic_config, backup_path, head
from probe.store.views import NAMES as VIEW_NAMES

DUMP = Path(__file__).with_name("data") / "schema-v2.sql"
T0 = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)  # as in data/make_schema_v2.py
CDN = "https://cdn.example.test/big.bin"
VIDEO = "https://video.example.test/clip.mp4"
TELEGRAM = "https://web.telegram.org/"

# What commit a6a420c's budget and history queries answered on the fixture (the figures that
# data/make_schema_v2.py printed when it made it).
OLD_BYTES_SINCE = {  # (days back from T0, vantage name) -> bytes
    (1, "home-almaty"): 1_088_576,
    (1, None): 500_000,
    (1, "office"): 7000,
    (4, "home-almaty"): 4_234_304,
}
OLD_PAST_RATES = {
    CDN: [
        ("2026-11-29T10:00:00+00:00", 120.0, "throttled", "throttle.sni", "192.0.2.7"),
        ("2026-11-26T12:00:00+00:00", 8000.0, "accessible", "ok", "192.0.2.7"),
    ]
}
# The facts revision 0002 copies out of each row's evidence: id -> (bytes, address).
BACKFILLED = {
    1: (None, None),
    2: (3_145_728, "192.0.2.7"),
    3: (None, None),
    4: (1_048_576, "192.0.2.7"),
    5: (40_000, "192.0.2.9"),
    6: (None, None),
    7: (500_000, "198.51.100.4"),
    8: (7000, "192.0.2.7"),
}
OLD_MEASUREMENT_COLUMNS = (
    "id, run_id, service, category, input, verdict, layer, detail, rule, reason, "
    "measured_at, duration_ms, throughput_kbps, baseline_kbps"
)
OLD_RUN_COLUMNS = (
    "run_id, started_at, finished_at, status, probe_version, vantage_name, network_type, asn, "
    "country, settings, counts"
)


def schema_2_database(path: Path) -> Path:
    """The fixture as a real file in WAL mode, as a6a420c left its databases."""
    with contextlib.closing(sqlite3.connect(path)) as raw:
        raw.executescript(DUMP.read_text(encoding="utf-8"))
        raw.execute("PRAGMA journal_mode = WAL")
    return path


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one statement, on a connection of its own."""
    with contextlib.closing(sqlite3.connect(path)) as raw:
        return raw.execute(sql).fetchall()


def contents(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row that schema 2 holds, table by table."""
    return {
        "runs": query(path, f"SELECT {OLD_RUN_COLUMNS} FROM runs ORDER BY run_id"),
        "measurements": query(path, f"SELECT {OLD_MEASUREMENT_COLUMNS} FROM measurements"),
        "evidence": query(path, "SELECT * FROM evidence ORDER BY measurement_id"),
        "meta": query(path, "SELECT * FROM meta"),
    }


def schema_of(path: Path) -> set[tuple[str, str, str | None]]:
    """The probe's tables and indexes as SQLite keeps them (Alembic's own table aside), their
    SQL with its whitespace normalised (SQLite keeps an added column's text as it was sent)."""
    rows = query(path, "SELECT type, name, sql FROM sqlite_master")
    return {(t, n, _normalised(sql)) for t, n, sql in rows if "alembic" not in n}


def _normalised(sql: str | None) -> str | None:
    """SQL with its whitespace collapsed, and names unquoted: a table that Alembic's batch
    mode rebuilt (to make a column NOT NULL) is named ``CREATE TABLE "measurements"``, and a
    reference to a renamed table ``REFERENCES "results"`` (revision 0006c), which SQLite
    reads as the same names."""
    if sql is None:
        return None
    return re.sub(r'"(\w+)"', r"\1", " ".join(sql.split()))


def tables(path: Path) -> set[str]:
    """The names of the tables in a file."""
    return {r[0] for r in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """A database as a6a420c wrote it: schema version 2, no Alembic."""
    return schema_2_database(tmp_path / "results.sqlite")


def test_a_schema_2_database_is_upgraded_in_place_after_a_backup(
    old: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = contents(old)
    with caplog.at_level(logging.WARNING, logger="probe.store.schema"):
        db = open_database(str(old))
    try:
        upgrade = db.upgrade
        backup = backup_path(old, HEAD)
        assert upgrade is not None
        assert (upgrade.found, upgrade.revision, upgrade.backup) == (
            "schema version 2", HEAD, backup,
        )  # fmt: skip
        assert backup.name == f"results.sqlite.pre-upgrade-{HEAD}.bak"
        assert str(backup) in caplog.text and "upgraded database" in caplog.text
        assert sorted(r.run_id for r in db.list_runs()) == [str(n) * 32 for n in (1, 2, 3, 4)]
        assert db.get_run("2" * 32).verdicts == {  # type: ignore[union-attr]
            "accessible": 2, "blocked": 1, "throttled": 1,
        }  # fmt: skip
        day = {k: bytes_since(db, T0 - dt.timedelta(days=k[0]), k[1]) for k in OLD_BYTES_SINCE}
        assert day == OLD_BYTES_SINCE
        rates = past_rates(db, [CDN, VIDEO, TELEGRAM], "home-almaty", T0 - dt.timedelta(days=30))
        got = {k: [(p.measured_at, p.kbps, p.verdict, p.detail, p.address) for p in v]
               for k, v in rates.items()}  # fmt: skip
        assert got == OLD_PAST_RATES
    finally:
        db.close()

    # The copy is the database as it was, whole, in one file.
    assert contents(backup) == before
    assert "alembic_version" not in tables(backup)
    assert query(backup, "PRAGMA journal_mode") == [("delete",)]
    assert not Path(f"{backup}-wal").exists()
    # The database itself: every row kept, the facts copied into their columns.
    after = contents(old)
    assert after["meta"] == [("schema_version", str(SCHEMA_VERSION))]
    assert {k: v for k, v in after.items() if k != "meta"} == {
        k: v for k, v in before.items() if k != "meta"
    }
    filled = query(old, "SELECT id, throughput_bytes, throughput_address FROM measurements")
    assert {i: (b, a) for i, b, a in filled} == BACKFILLED
    assert query(old, "SELECT version_num FROM alembic_version") == [(head(),)]
    assert query(old, "PRAGMA integrity_check") == [("ok",)]
    assert query(old, "PRAGMA foreign_key_check") == []


def test_the_upgrade_is_told_on_stderr_where_nothing_configures_logging(old: Path) -> None:
    """As under `probe run`: the message reaches the volunteer, naming the copy."""
    code = "import sys; from probe.store import open_database; open_database(sys.argv[1]).close()"
    done = subprocess.run(
        [sys.executable, "-c", code, str(old)], capture_output=True, text=True, check=True
    )
    assert f"upgraded database {old} from schema version 2 to revision {HEAD}" in done.stderr
    assert str(backup_path(old, HEAD)) in done.stderr


def test_an_upgraded_database_is_not_upgraded_again(old: Path) -> None:
    open_database(str(old)).close()
    backup = backup_path(old, HEAD)
    copied = backup.read_bytes()
    again = open_database(str(old))
    try:
        assert again.upgrade is None
    finally:
        again.close()
    assert backup.read_bytes() == copied


def test_an_upgraded_database_has_the_schema_of_a_new_one(old: Path, tmp_path: Path) -> None:
    open_database(str(old)).close()
    new = tmp_path / "new.sqlite"
    open_database(str(new)).close()
    assert schema_of(old) == schema_of(new)
    views = {n for t, n, _ in schema_of(old) if t == "view"}
    assert views == {*VIEW_NAMES, "measurements"}  # measurements: SQLite's since 0006c
    # The views read the upgraded rows (the fixture holds blocked and throttled inputs).
    assert query(old, "SELECT COUNT(DISTINCT run_id) FROM blocked_inputs")[0][0] >= 1


def test_a_read_only_open_reads_an_old_database_as_it_is(old: Path) -> None:
    before = old.read_bytes()
    names = sorted(p.name for p in old.parent.iterdir())
    db = open_database(str(old), read_only=True)
    try:
        assert db.upgrade is None
        assert len(db.list_runs()) == 4
        rows = db.measurements_of_run("2" * 32)
        assert [r.verdict for r in rows] == ["blocked", "throttled", "accessible", "accessible"]
        detail = db.get_measurement(4)
        assert detail is not None
        assert detail.evidence["verdict_evidence"]["throughput_bytes"] == 1_048_576
        assert [r.measurement_id for r in db.iter_export_rows()] == [1, 2, 3, 4, 5, 6, 7, 8]
    finally:
        db.close()
    assert old.read_bytes() == before
    assert sorted(p.name for p in old.parent.iterdir()) == names  # no backup, no lock
    assert "alembic_version" not in tables(old)


def test_a_failed_backup_leaves_the_database_as_it_was(old: Path) -> None:
    before = contents(old)
    # Something in the way of the copy: SQLite cannot make a file where a directory is.
    in_the_way = backup_path(old, HEAD).with_suffix(".bak.partial")
    in_the_way.mkdir()
    with pytest.raises(StoreError, match=r"cannot back up database .*nothing was changed"):
        open_database(str(old))
    assert contents(old) == before
    assert "alembic_version" not in tables(old)
    assert not backup_path(old, HEAD).exists()


def test_two_writers_opening_at_once_upgrade_once(old: Path) -> None:
    """The second waits for the first's write lock, then finds the database upgraded."""
    barrier = threading.Barrier(2)

    def open_it() -> Database:
        barrier.wait()
        return open_database(str(old))

    with ThreadPoolExecutor(max_workers=2) as pool:
        opened = list(pool.map(lambda _: open_it(), range(2)))
    try:
        assert sorted(db.upgrade is None for db in opened) == [False, True]
    finally:
        for db in opened:
            db.close()
    assert query(old, "SELECT version_num FROM alembic_version") == [(head(),)]
    assert len(query(old, "SELECT * FROM measurements")) == len(BACKFILLED)


@pytest.mark.parametrize("read_only", [False, True])
def test_a_newer_revision_is_refused(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "results.sqlite"
    open_database(str(path)).close()
    with contextlib.closing(sqlite3.connect(path)) as raw, raw:
        raw.execute("UPDATE alembic_version SET version_num = '0099'")
    before = path.read_bytes()
    with pytest.raises(StoreError) as caught:
        open_database(str(path), read_only=read_only)
    message = str(caught.value)
    assert str(path) in message
    assert "schema revision 0099" in message and "upgrade the probe" in message
    assert path.read_bytes() == before
    assert not backup_path(path, HEAD).exists()


def test_a_new_database_is_at_head_and_matches_the_models(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    db = open_database(str(path))
    try:
        assert db.upgrade is None  # created, not upgraded: nothing to back up
    finally:
        db.close()
    assert query(path, "SELECT version_num FROM alembic_version") == [(head(),)]
    assert query(path, "SELECT * FROM meta") == [("schema_version", str(SCHEMA_VERSION))]
    assert [p.name for p in tmp_path.iterdir() if ".bak" in p.name] == []
    # A new database is made from the models, stamped at the head without Alembic: every
    # revision applied in order must give the same schema, and match the models.
    migrated = tmp_path / "migrated.sqlite"
    engine = create_engine(f"sqlite:///{migrated}")
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        with engine.connect() as conn:
            # SQLite's shape (compact.py): the models with measurements in results and inputs.
            assert compare_metadata(MigrationContext.configure(conn), metadata_for("sqlite")) == []
    finally:
        engine.dispose()
    # Tables, indexes and views alike: revision 0004v and schema.py create the same views.
    assert schema_of(migrated) == schema_of(path)
    assert {n for t, n, _ in schema_of(path) if t == "view"} == {*VIEW_NAMES, "measurements"}
    stamp = "SELECT sql FROM sqlite_master WHERE name LIKE 'alembic%' ORDER BY name"
    assert [" ".join(r[0].split()) for r in query(migrated, stamp)] == [
        " ".join(r[0].split()) for r in query(path, stamp)
    ]
    assert query(migrated, "SELECT * FROM meta") == query(path, "SELECT * FROM meta")


def test_the_revisions_known_without_alembic_are_alembics() -> None:
    script = ScriptDirectory(str(MIGRATIONS))
    assert tuple(reversed([r.revision for r in script.walk_revisions()])) == REVISIONS
    assert script.get_current_head() == HEAD == head()


def test_revision_0001_is_schema_2_exactly(old: Path, tmp_path: Path) -> None:
    path = tmp_path / "at-0001.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
    finally:
        engine.dispose()
    assert schema_of(path) == schema_of(old)
    assert query(path, "SELECT * FROM meta") == [("schema_version", "2")]


def test_the_writer_fills_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    db = open_database(str(path))
    try:
        run_id = uuid.uuid4().hex
        db.begin_run(RunInfo(run_id, T0, Vantage(name="home"), "0", {}))
        timed = Verdict("accessible", None, "ok", "throughput.not_slower", "Not slower.", {},
                        800.0, 9000.0, "192.0.2.7")  # fmt: skip
        db.record(MeasurementRecord(run_id, "s", "social", CDN, timed, T0, 1.0,
                                    throughput_bytes=12_345))  # fmt: skip
    finally:
        db.close()
    assert query(path, "SELECT throughput_bytes, throughput_address FROM measurements") == [
        (12_345, "192.0.2.7")
    ]


def test_opening_a_database_at_the_head_imports_no_alembic(tmp_path: Path) -> None:
    # Alembic and Mako cost a Raspberry Pi about 7 MB: paid only when a database is upgraded.
    path = tmp_path / "results.sqlite"
    code = (
        "import sys\nfrom probe.store import open_database\n"
        f"open_database({str(path)!r}).close()\nopen_database({str(path)!r}).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_revision_0004c_costs_older_rows_nothing_and_keeps_schema_version_3(old: Path) -> None:
    _upgrade_file(old, "0004c")
    # A probe's rows leave uid NULL: (run_id, id) is their id on the wire (collector/wire.py).
    assert query(old, "SELECT count(*) FROM measurements WHERE uid IS NULL") == [(len(BACKFILLED),)]
    assert query(old, "SELECT value FROM meta WHERE key = 'schema_version'") == [("3",)]
    with contextlib.closing(sqlite3.connect(old)) as raw:
        # What a probe that knows only version 3 writes (no uid) is still a right row here.
        raw.execute(
            "INSERT INTO measurements (run_id, service, category, input, verdict, detail, rule,"
            " reason, measured_at, duration_ms) SELECT run_id, service, category, input,"
            " verdict, detail, rule, reason, measured_at, duration_ms FROM measurements"
        )
        raw.execute("UPDATE measurements SET uid = 'a' WHERE id = 1")  # as on a collector
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute("UPDATE measurements SET uid = 'a' WHERE id = 2")


def _upgrade_file(path: Path, target: str) -> None:
    """Alembic's upgrade of a file to ``target`` (a database before Alembic: from 0001)."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            config = alembic_config(conn)
            found = tables(path) if path.exists() else set()
            if "meta" in found and "alembic_version" not in found:
                command.stamp(config, "0001")
            command.upgrade(config, target)
    finally:
        engine.dispose()


def test_revision_0005p_changes_nothing_on_sqlite(tmp_path: Path) -> None:
    """The monthly partitions are PostgreSQL's (tests/probe/test_partitions.py): SQLite's
    tables, indexes and views at 0004r are those of 0005p."""
    at_0004r, at_head = tmp_path / "0004r.sqlite", tmp_path / "head.sqlite"
    for path, target in ((at_0004r, "0004r"), (at_head, "0005p")):
        _upgrade_file(path, target)
    assert schema_of(at_0004r) == schema_of(at_head)
    assert query(at_head, "SELECT version_num FROM alembic_version") == [("0005p",)]
