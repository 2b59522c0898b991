"""The daemon's tables: its schedule per group, its sweeps, and outages.

Revision ID: 0003d
Revises: 0003l

Only new tables: probes that know meta.schema_version 3 can still write runs and
measurements as before, so the version stays (they would not fill these tables, which
nothing of theirs reads).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# As revision 0001 spells them: a revision must not depend on the models of a later day.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)

revision = "0003d"
down_revision: str | None = "0003l"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create daemon_groups, daemon_sweeps and outages."""
    op.create_table(
        "daemon_groups",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("daemon_started_at", TIME, nullable=False),
        sa.Column("every_s", sa.Float(), nullable=False),
        sa.Column("last_started_at", TIME, nullable=True),
        sa.Column("last_finished_at", TIME, nullable=True),
        sa.Column("last_run_id", sa.String(32), nullable=True),
        sa.Column("last_status", sa.String(16), nullable=True),
        sa.Column("next_at", TIME, nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_table(
        "daemon_sweeps",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("group", sa.String(64), nullable=False),
        sa.Column("planned_at", TIME, nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("network", sa.String(16), nullable=True),
        sa.Column("throughput", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_daemon_sweeps_started_at", "daemon_sweeps", ["started_at"])
    op.create_table(
        "outages",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("vantage_name", sa.String(128), nullable=True),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("ended_at", TIME, nullable=True),
        sa.Column("detected_by", sa.String(16), nullable=False),
        sa.Column("network", sa.String(16), nullable=True),
    )
    op.create_index("ix_outages_started_at", "outages", ["started_at"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_outages_started_at", "outages")
    op.drop_table("outages")
    op.drop_index("ix_daemon_sweeps_started_at", "daemon_sweeps")
    op.drop_table("daemon_sweeps")
    op.drop_table("daemon_groups")
