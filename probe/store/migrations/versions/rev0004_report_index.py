"""The report's index: blocked and throttled measurements, by verdict and service.

Revision ID: 0004r
Revises: 0004v

A partial index (SQLite and PostgreSQL both have them): only the few rows that are blocked
or throttled, so it costs a volunteer's database almost nothing, and the report's episodes
and throttled rates read those rows alone instead of scanning every measurement (probe
report over a year of a million rows). An index only: meta.schema_version stays.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004r"
down_revision: str | None = "0004v"
branch_labels: str | None = None
depends_on: str | None = None

# As the models spell it (probe/store/models.py INTERFERENCE_ROWS), fixed here.
WHERE = sa.text("verdict IN ('blocked', 'throttled')")


def upgrade() -> None:
    """Create ix_measurements_interference."""
    op.create_index(
        "ix_measurements_interference", "measurements", ["verdict", "service"],
        sqlite_where=WHERE, postgresql_where=WHERE,
    )  # fmt: skip


def downgrade() -> None:
    """Drop it."""
    op.drop_index("ix_measurements_interference", table_name="measurements")
