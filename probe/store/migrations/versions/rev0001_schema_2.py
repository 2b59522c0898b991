"""Schema 2, exactly as the probe created it before Alembic.

Revision ID: 0001
Revises: none (a database made before Alembic, meta.schema_version 2, is stamped here)

Every name, type and constraint is spelled out rather than taken from the models: a revision
records the schema of its day, whatever the models say later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import SchemaItem

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# JSONB on PostgreSQL so a central database can index into evidence; plain JSON elsewhere.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY; a central database wants 64 bits.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Kept as naive UTC text on SQLite, with its offset on PostgreSQL (models.UTCDateTime).
TIME = sa.DateTime(timezone=True)

RUN_STATUSES = ("running", "completed", "interrupted", "timed_out", "offline", "failed", "aborted")
VERDICTS = ("accessible", "blocked", "throttled", "inconclusive")


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def runs_columns() -> list[SchemaItem]:
    """The runs table of schema 2 (also what the upgrade of a schema-1 database rebuilds)."""
    return [
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("finished_at", TIME),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("probe_version", sa.String(64), nullable=False),
        sa.Column("vantage_name", sa.String(128)),
        sa.Column("network_type", sa.String(32)),
        sa.Column("asn", sa.BigInteger()),
        sa.Column("country", sa.String(2)),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("counts", JSON),
        sa.CheckConstraint(_in("status", RUN_STATUSES), name="ck_runs_status"),
    ]


def upgrade() -> None:
    """Create meta, runs, measurements and evidence, and record schema version 2."""
    meta = op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table("runs", *runs_columns())
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    _create_measurements()
    op.create_table(
        "evidence",
        sa.Column(
            "measurement_id",
            ID,
            sa.ForeignKey("measurements.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("data", JSON, nullable=False),
    )
    op.bulk_insert(meta, [{"key": "schema_version", "value": "2"}])


def _create_measurements() -> None:
    op.create_table(
        "measurements",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("layer", sa.String(8)),
        sa.Column("detail", sa.String(32), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("measured_at", TIME, nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("throughput_kbps", sa.Float()),
        sa.Column("baseline_kbps", sa.Float()),
        sa.CheckConstraint(_in("verdict", VERDICTS), name="ck_measurements_verdict"),
    )
    for column in ("run_id", "service", "measured_at"):
        op.create_index(f"ix_measurements_{column}", "measurements", [column])


def downgrade() -> None:
    """Drop every table: what was there before the probe's first open."""
    for table in ("evidence", "measurements", "runs", "meta"):
        op.drop_table(table)
