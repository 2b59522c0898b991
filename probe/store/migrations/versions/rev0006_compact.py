"""SQLite: measurements kept compact, in results and inputs behind a measurements view.

Revision ID: 0006c
Revises: 0005p

On SQLite (probe/store/compact.py says why and what each column holds): runs gains
``run_key``, an integer given to every run in the order they started; the distinct
(service, category, input) go to ``inputs``; every measurement goes to ``results`` with its
id, its run's key, its input's id and measured_at as integer microseconds since the epoch;
``measurements`` becomes a view giving the same columns and values as the table did, and
the researchers' views, dropped before, are created again as views.py's ``V0006C``: the
same columns and values, read from results and inputs (through the measurements view they
would turn every row's time into text to sort it; the downgrade makes 0004v's again).
Evidence keeps every row and id: its table is not copied, only its foreign key follows
measurements to results by a rename (SQLite rewrites references to a renamed table), with
ON DELETE CASCADE. One transaction, as every upgrade; it rewrites the verdict rows (seconds for a
year of them), not the evidence.

PostgreSQL (the collector, partitioned by month in 0005p) is unchanged; on both,
meta.schema_version becomes 4: a probe from before Alembic that knows 3 would write into
the view (SQLite refuses) rather than the tables, and a probe with Alembic refuses a
revision it does not know (schema.py). The downgrade makes 0005p's table again from the
view's rows, ids kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Connection

from probe.store.compact import VIEW_0006C
from probe.store.views import NAMES, V0004V, V0006C, create_views, drop_views

revision = "0006c"
down_revision: str | None = "0005p"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INTERFERENCE = sa.text("verdict IN ('blocked', 'throttled')")
_meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.Text))
# The columns results keeps as measurements had them, in order.
_KEPT = (
    "verdict, layer, detail, rule, reason, measured_at, duration_ms, throughput_kbps, "
    "baseline_kbps, throughput_bytes, throughput_address, uid"
)
_OLD = "measurements_0005"
_NEW = "results_0006"
# measured_at, text (YYYY-MM-DD HH:MM:SS.ffffff) to integer microseconds and back.
_TO_MICROS = (
    "CAST(strftime('%s', substr(m.measured_at, 1, 19)) AS INTEGER) * 1000000 + "
    "CAST(substr(substr(m.measured_at, 21) || '000000', 1, 6) AS INTEGER)"
)
_TO_TEXT = (
    "strftime('%Y-%m-%d %H:%M:%S', r.measured_at / 1000000, 'unixepoch') || "
    "printf('.%06d', r.measured_at % 1000000)"
)
# Revision 0005p's measurements on SQLite, as the downgrade makes it again.
MEASUREMENTS_0005P = (
    "CREATE TABLE measurements ( id INTEGER NOT NULL, run_id VARCHAR(32) NOT NULL, "
    "service VARCHAR(128) NOT NULL, category VARCHAR(32) NOT NULL, input TEXT NOT NULL, "
    "verdict VARCHAR(16) NOT NULL, layer VARCHAR(8), detail VARCHAR(32) NOT NULL, "
    "rule VARCHAR(64) NOT NULL, reason TEXT NOT NULL, measured_at DATETIME NOT NULL, "
    "duration_ms FLOAT NOT NULL, throughput_kbps FLOAT, baseline_kbps FLOAT, "
    "throughput_bytes BIGINT, throughput_address VARCHAR(45), uid VARCHAR(32), "
    "PRIMARY KEY (id), CONSTRAINT ck_measurements_verdict CHECK (verdict IN ('accessible', "
    "'blocked', 'throttled', 'inconclusive')), FOREIGN KEY(run_id) REFERENCES runs (run_id) )",
    "CREATE INDEX ix_measurements_run_id ON measurements (run_id)",
    "CREATE INDEX ix_measurements_measured_at ON measurements (measured_at)",
    "CREATE UNIQUE INDEX ix_measurements_uid ON measurements (uid)",
    "CREATE INDEX ix_measurements_service ON measurements (service)",
    "CREATE INDEX ix_measurements_interference ON measurements (verdict, service) "
    "WHERE verdict IN ('blocked', 'throttled')",
)


def upgrade() -> None:
    """Split measurements into inputs and results behind a view (SQLite only)."""
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        drop_views(conn, NAMES)
        _aside(conn, "measurements", "results", _OLD)
        conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN run_key INTEGER")
        conn.exec_driver_sql(
            "UPDATE runs SET run_key = o.n FROM (SELECT run_id, "
            "ROW_NUMBER() OVER (ORDER BY started_at, run_id) AS n FROM runs) AS o "
            "WHERE o.run_id = runs.run_id"
        )
        op.create_index("ix_runs_run_key", "runs", ["run_key"], unique=True)
        _create_tables()
        _fill(conn)
        conn.exec_driver_sql(f"DROP TABLE {_OLD}")
        conn.exec_driver_sql(VIEW_0006C)
        create_views(conn, V0006C)
    op.execute(_meta.update().where(_meta.c.key == "schema_version").values(value="4"))


def downgrade() -> None:
    """Make 0005p's measurements table again from results and inputs (SQLite only)."""
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        drop_views(conn, (*NAMES, "measurements"))
        _aside(conn, "results", "measurements", _NEW)
        for sql in MEASUREMENTS_0005P:
            conn.exec_driver_sql(sql)
        conn.exec_driver_sql(
            f"INSERT INTO measurements (id, run_id, service, category, input, {_KEPT}) "
            f"SELECT r.id, k.run_id, i.service, i.category, i.input, "
            f"{_KEPT.replace('measured_at', _TO_TEXT)} "
            f"FROM {_NEW} AS r JOIN inputs AS i ON i.id = r.input_id "
            "JOIN runs AS k ON k.run_key = r.run ORDER BY r.id"
        )
        _same_count(conn, _NEW, "measurements")
        conn.exec_driver_sql(f"DROP TABLE {_NEW}")
        conn.exec_driver_sql("DROP TABLE inputs")
        conn.exec_driver_sql("DROP INDEX ix_runs_run_key")
        conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN run_key")
        create_views(conn, V0004V)
    op.execute(_meta.update().where(_meta.c.key == "schema_version").values(value="3"))


def _aside(conn: Connection, table: str, successor: str, aside: str) -> None:
    """Rename ``table`` out of the way while evidence's foreign key comes to name
    ``successor``: renamed to it first (SQLite rewrites the references to a renamed table),
    then aside with legacy renaming (which leaves them as they are)."""
    conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {successor}")
    conn.exec_driver_sql("PRAGMA legacy_alter_table = ON")
    try:
        conn.exec_driver_sql(f"ALTER TABLE {successor} RENAME TO {aside}")
    finally:
        conn.exec_driver_sql("PRAGMA legacy_alter_table = OFF")


def _create_tables() -> None:
    """inputs and results as compact.sqlite_metadata derives them at this revision."""
    op.create_table(
        "inputs",
        sa.Column("id", ID, primary_key=True),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
    )
    op.create_index("ix_inputs_input", "inputs", ["service", "category", "input"], unique=True)
    op.create_table(
        "results",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("run", sa.Integer(), sa.ForeignKey("runs.run_key"), nullable=False),
        sa.Column("input_id", sa.Integer(), sa.ForeignKey("inputs.id"), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("layer", sa.String(8)),
        sa.Column("detail", sa.String(32), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("measured_at", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("throughput_kbps", sa.Float()),
        sa.Column("baseline_kbps", sa.Float()),
        sa.Column("throughput_bytes", sa.BigInteger()),
        sa.Column("throughput_address", sa.String(45)),
        sa.Column("uid", sa.String(32)),
        sa.CheckConstraint(
            "verdict IN ('accessible', 'blocked', 'throttled', 'inconclusive')",
            name="ck_results_verdict",
        ),
    )
    for name, columns in (
        ("run", ["run"]), ("input_id", ["input_id"]), ("measured_at", ["measured_at"]),
    ):  # fmt: skip
        op.create_index(f"ix_results_{name}", "results", columns)
    op.create_index(
        "ix_results_uid", "results", ["uid"], unique=True, sqlite_where=sa.text("uid IS NOT NULL")
    )
    op.create_index(
        "ix_results_interference", "results", ["verdict", "input_id"],
        sqlite_where=INTERFERENCE,
    )  # fmt: skip


def _fill(conn: Connection) -> None:
    """Every measurement into inputs and results, ids kept; all of them, or a failure."""
    conn.exec_driver_sql(
        f"INSERT INTO inputs (service, category, input) SELECT service, category, input "
        f"FROM {_OLD} GROUP BY service, category, input ORDER BY min(id)"
    )
    conn.exec_driver_sql(
        f"INSERT INTO results (id, run, input_id, {_KEPT}) "
        f"SELECT m.id, k.run_key, i.id, {_KEPT.replace('measured_at', _TO_MICROS)} "
        f"FROM {_OLD} AS m JOIN runs AS k ON k.run_id = m.run_id "
        "JOIN inputs AS i ON i.service = m.service AND i.category = m.category "
        "AND i.input = m.input ORDER BY m.id"
    )
    _same_count(conn, _OLD, "results")


def _same_count(conn: Connection, source: str, target: str) -> None:
    """Refuse to lose a row (one whose run is missing, against the foreign key)."""
    counts = [
        conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one() for t in (source, target)
    ]
    if counts[0] != counts[1]:
        raise RuntimeError(
            f"revision 0006c: {counts[0]} rows in {source} but {counts[1]} copied to {target} "
            "(a row whose run is missing?): nothing was changed"
        )
