"""The store on a real PostgreSQL server (tests/servers/postgres.py): what a sweep writes
reads back as on SQLite, and the migrations give the models' schema there too."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, text

from probe.store import open_database
from probe.store.migrations import HEAD
from probe.store.partitions import include_name, include_object, metadata_for
from probe.store.schema import alembic_config
from probe.store.views import NAMES as VIEW_NAMES
from tests.probe.test_store import BLOCKED, OBS, THROTTLED, at, record, run_info
from tests.servers.postgres import PostgresServer


def test_a_run_round_trips_through_postgresql(postgres_url: str) -> None:
    db = open_database(postgres_url)
    info = run_info()
    try:
        db.begin_run(info)
        blocked = db.record(record(info.run_id, BLOCKED, observations=OBS))
        db.record(record(info.run_id, THROTTLED, measured_at=at(2)))
        db.finish_run(info.run_id, "completed", {"inputs": 2}, finished_at=at(60))
    finally:
        db.close()
    reopened = open_database(postgres_url, read_only=True)
    try:
        run = reopened.get_run(info.run_id)
        assert run is not None and run.status == "completed"
        detail = reopened.get_measurement(blocked)
        assert detail is not None
        assert detail.row.verdict == "blocked" and detail.row.detail == "dns.bogon"
        assert detail.row.measured_at == at(0) and detail.row.measured_at.tzinfo is not None
        rows = list(reopened.iter_export_rows())
        assert [(r.verdict, r.asn, r.country) for r in rows] == [
            ("blocked", 9198, "KZ"),
            ("throttled", 9198, "KZ"),
        ]
    finally:
        reopened.close()


def test_the_migrations_give_the_models_schema_on_postgresql(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database("migrated")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        with engine.connect() as conn:
            assert differences(conn) == []
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == HEAD
        # The views too: as schema.py creates them in a new database, from the same SQL.
        new = postgres_server.create_database("new")
        open_database(new).close()
        assert views_of(url) == views_of(new)
        assert set(views_of(url)) == set(VIEW_NAMES)
        # Partitioned by month on both, the same way (revision 0005p and schema.py).
        assert partitioning_of(url) == partitioning_of(new) == PARTITIONING
    finally:
        engine.dispose()


# What pg_partitioned_table says of the two tables at the head: RANGE on measured_at.
PARTITIONING = {"measurements": ("r", "measured_at"), "evidence": ("r", "measured_at")}


def differences(conn: Connection) -> list[Any]:
    """Alembic's differences between the database and the models as PostgreSQL holds them
    (partitioned: partitions.metadata_for), the partitions themselves left out."""
    context = MigrationContext.configure(
        conn, opts={"include_name": include_name, "include_object": include_object}
    )
    return list(compare_metadata(context, metadata_for("postgresql")))


def partitioning_of(url: str) -> dict[str, tuple[str, str]]:
    """Each partitioned table's strategy and key column (pg_partitioned_table)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT c.relname, p.partstrat, a.attname FROM pg_partitioned_table AS p "
                    "JOIN pg_class AS c ON c.oid = p.partrelid JOIN pg_attribute AS a "
                    "ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]"
                )
            )
            return {name: (strategy, column) for name, strategy, column in rows}
    finally:
        engine.dispose()


def views_of(url: str) -> dict[str, str]:
    """Each view's definition as PostgreSQL gives it back (normalised by the server)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'")
            )
            return {name: definition for name, definition in rows}
    finally:
        engine.dispose()
