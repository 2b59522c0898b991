"""The researchers' views (probe/store/views.py) on a real SQLite file and a real PostgreSQL
server: each view's rows for a database with known answers, times in UTC whatever the
session's zone, and the views surviving what the store does to its tables."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import OperationalError

from probe.store import compact
from probe.store.retention import PRUNED, prune
from probe.store.schema import alembic_config
from probe.store.views import COLUMNS, NAMES, V0004V, create_views, drop_views
from tests.probe.results_data import API, CDN, RUNS, WEB, at, fill
from tests.probe.test_store import BOGON

# Revision 0004v's SQL is never edited (views.py): a change is a new revision.
V0004V_SHA256 = "5d8ae571b34cb1667b960840cf774a54b0018b14782050fa1b5b68b748804b94"

A, B, C = RUNS
HOME = ("home-almaty", 9198, "KZ")
MOBILE = ("mobile", None, None)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A filled database: a real SQLite file, or a new database on the real server."""
    if request.param == "sqlite":
        target = f"sqlite:///{tmp_path / 'results.sqlite'}"
    else:
        target = request.getfixturevalue("postgres_url")
    fill(target if request.param != "sqlite" else str(tmp_path / "results.sqlite"))
    return target


@contextlib.contextmanager
def connected(url: str) -> Iterator[sa.Connection]:
    """A plain connection (no models: what a researcher's tool has)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def iso(value: Any) -> Any:
    """A view's time as SQLite gives it: PostgreSQL's timestamptz written the same way."""
    if not isinstance(value, dt.datetime):
        return value
    assert value.utcoffset() is not None
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def t(hours: float, seconds: float = 0) -> str:
    """A moment of the data as the views spell it."""
    return str(iso(at(hours, seconds)))


def rows(url: str, view: str, order: str) -> list[tuple[Any, ...]]:
    """Every row of a view, its times as ISO-8601 UTC text."""
    with connected(url) as conn:
        result = conn.execute(sa.text(f"SELECT * FROM {view} ORDER BY {order}"))
        assert tuple(result.keys()) == COLUMNS[view]
        return [tuple(iso(v) for v in row) for row in result]


def test_latest_verdicts_gives_each_service_and_vantage_its_latest_runs_verdict(
    url: str,
) -> None:
    assert rows(url, "latest_verdicts", "service, vantage_name") == [
        ("cdn", *HOME, "accessible", None, "ok", "Not slower.", t(1, 2), CDN, 1, 1, B, 6),
        ("telegram", *HOME, "accessible", None, "ok", "Every step succeeded.", t(1), WEB,
         2, 2, B, 4),
        # Blocked on all three inputs; dns.bogon on two of them: the service's detail.
        ("telegram", *MOBILE, "blocked", "dns", "dns.bogon", BOGON, t(2, 1), WEB, 3, 3, C, 8),
    ]  # fmt: skip


def test_hourly_verdicts_counts_per_service_vantage_hour_and_verdict(url: str) -> None:
    assert rows(url, "hourly_verdicts", "service, vantage_name, hour, verdict") == [
        ("cdn", *HOME, "2026-11-29T18:00:00Z", 18, "throttled", 1),
        ("cdn", *HOME, "2026-11-29T19:00:00Z", 19, "accessible", 1),
        ("telegram", *HOME, "2026-11-29T18:00:00Z", 18, "accessible", 1),
        ("telegram", *HOME, "2026-11-29T18:00:00Z", 18, "blocked", 1),
        ("telegram", *HOME, "2026-11-29T19:00:00Z", 19, "accessible", 2),
        ("telegram", *MOBILE, "2026-11-29T20:00:00Z", 20, "blocked", 3),
    ]


def test_blocked_inputs_lists_blocked_and_throttled_inputs_with_their_reasons(url: str) -> None:
    got = rows(url, "blocked_inputs", "measurement_id")
    home, mobile = ("home-almaty", "home", 9198, "KZ"), ("mobile", None, None, None)
    slow = "Goodput 12 kbps with the target SNI, 9000 kbps with an innocuous one."
    assert got == [
        (1, A, t(0), "telegram", "messaging", WEB, "blocked", "dns", "dns.bogon", "dns.bogon",
         BOGON, None, None, *home),
        (3, A, t(0, 2), "cdn", "messaging", CDN, "throttled", "tls", "throttle.sni",
         "throttle.sni", slow, 12.0, 9000.0, *home),
        (7, C, t(2), "telegram", "messaging", "149.154.167.99:443", "blocked", "tcp",
         "tcp.reset", "tcp.reset", "Reset after the SYN.", None, None, *mobile),
        (8, C, t(2, 1), "telegram", "messaging", WEB, "blocked", "dns", "dns.bogon",
         "dns.bogon", BOGON, None, None, *mobile),
        (9, C, t(2, 2), "telegram", "messaging", API, "blocked", "dns", "dns.bogon",
         "dns.bogon", BOGON, None, None, *mobile),
    ]  # fmt: skip


def test_throughput_history_gives_each_timed_input_its_rate_against_the_baseline(
    url: str,
) -> None:
    got = rows(url, "throughput_history", "measured_at")
    assert got == [
        (3, A, t(0, 2), "cdn", CDN, 12.0, 9000.0, pytest.approx(12 / 9000), "throttled",
         "throttle.sni", "192.0.2.7", *HOME),
        (6, B, t(1, 2), "cdn", CDN, 8000.0, 9000.0, pytest.approx(8000 / 9000), "accessible",
         "ok", "192.0.2.7", *HOME),
    ]  # fmt: skip


def test_postgresql_hours_are_utc_whatever_the_sessions_zone(postgres_url: str) -> None:
    fill(postgres_url)
    with connected(postgres_url) as conn:
        conn.exec_driver_sql("SET TIME ZONE 'Asia/Kolkata'")  # +05:30: no whole-hour offset
        got = conn.execute(sa.text("SELECT DISTINCT hour, hour_of_day FROM hourly_verdicts"))
        assert sorted((iso(h), n) for h, n in got) == [
            ("2026-11-29T18:00:00Z", 18), ("2026-11-29T19:00:00Z", 19),
            ("2026-11-29T20:00:00Z", 20),
        ]  # fmt: skip
        kinds = conn.execute(
            sa.text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'blocked_inputs' AND column_name IN ('measured_at', 'asn')"
            )
        )
        assert dict(kinds.all()) == {"measured_at": "timestamp with time zone", "asn": "bigint"}


def test_sqlite_gives_utc_text_with_a_z_and_integer_asns(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    fill(str(path))
    with contextlib.closing(sqlite3.connect(path)) as raw:
        got = raw.execute(
            "SELECT measured_at, typeof(asn), typeof(measured_at) FROM blocked_inputs"
            " ORDER BY measurement_id LIMIT 1"
        ).fetchall()
        assert got == [("2026-11-29T18:02:03.456000Z", "integer", "text")]
        names = raw.execute("SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name")
        assert [n for (n,) in names] == sorted((*NAMES, "measurements"))  # 0006c


def test_the_views_read_pruned_rows(tmp_path: Path) -> None:
    """Retention deletes evidence and shortens reasons: the views go on answering."""
    path = tmp_path / "results.sqlite"
    fill(str(path))
    done = prune(str(path), dt.timedelta(days=1), now=at(24 * 10))
    assert done.evidence_deleted == 9
    with contextlib.closing(sqlite3.connect(path)) as raw:
        reasons = raw.execute("SELECT DISTINCT reason FROM blocked_inputs").fetchall()
        assert reasons == [(PRUNED,)]
        assert raw.execute("SELECT COUNT(*) FROM latest_verdicts").fetchone() == (3,)


def _rebuild_results(conn: sa.Connection) -> None:
    """What a later revision's batch mode does to a SQLite table: copy, drop, rename (results:
    the table behind the measurements view since 0006c)."""
    with Operations(MigrationContext.configure(conn)).batch_alter_table(
        "results", recreate="always"
    ) as batch:
        batch.add_column(sa.Column("later", sa.Integer(), nullable=True))


def test_a_sqlite_table_rebuild_needs_the_views_dropped_first(tmp_path: Path) -> None:
    """Why views.py tells later revisions to drop the views around a rebuild; the earlier
    revisions' rebuilds (0001's of schema 1, 0002's) run before 0004v creates any view."""
    path, spoilt = tmp_path / "results.sqlite", tmp_path / "spoilt.sqlite"
    fill(str(path))
    shutil.copyfile(path, spoilt)
    # pysqlite commits DDL as it goes: the failed attempt leaves its copy of the table behind,
    # so it is made on a copy of the file.
    engine = sa.create_engine(f"sqlite:///{spoilt}")
    try:
        with pytest.raises(OperationalError, match="error in view"), engine.begin() as conn:
            _rebuild_results(conn)
    finally:
        engine.dispose()
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            drop_views(conn, (*NAMES, "measurements"))  # the view of results too
            _rebuild_results(conn)
            compact.create_view(conn)
            create_views(conn)
        with engine.connect() as conn:
            count = conn.exec_driver_sql("SELECT COUNT(*) FROM blocked_inputs").scalar()
            assert count == 5
    finally:
        engine.dispose()


def test_revision_0004v_sql_is_never_edited() -> None:
    text = json.dumps(V0004V, sort_keys=True)
    assert hashlib.sha256(text.encode()).hexdigest() == V0004V_SHA256


def test_revision_0004v_downgrades_to_the_tables_alone_and_upgrades_again(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    fill(str(path))
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0003d")
        with engine.connect() as conn:
            assert sa.inspect(conn).get_view_names() == []
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM measurements").scalar() == 9
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        with engine.connect() as conn:
            assert sorted(sa.inspect(conn).get_view_names()) == sorted((*NAMES, "measurements"))
    finally:
        engine.dispose()
