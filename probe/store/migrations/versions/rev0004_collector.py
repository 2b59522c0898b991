"""Central collection: the collector's measurement key, who uploaded a run, the tokens.

Revision ID: 0004c
Revises: 0003d

``measurements.uid`` (nullable, unique) is filled only on a collector: the key it is
idempotent by, derived from the uploading token's name and the probe's (run_id, id)
(probe/collector/ingest.py), so a retried upload never duplicates. A probe's own rows
leave it NULL: there (run_id, id) is the measurement's id already, and neither ever
changes. ``runs.uploaded_by`` names, on a collector, the token that uploaded the run;
``collector_tokens`` holds the collector's tokens, hashed.

The probe's outbox is no column at all: a high-water mark per collector in ``meta``
(``uploaded_through:...``, probe/collector/outbox.py), so a year of hourly sweeps pays
nothing per row for it. Older rows need nothing here: they are pending for a collector
that has no mark yet.

meta.schema_version stays 3: a probe that knows only 3 writes measurements with uid NULL,
as this one does, and runs with uploaded_by NULL; nothing it writes is wrong here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# As revision 0001 spells them: a revision must not depend on the models of a later day.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)

revision = "0004c"
down_revision: str | None = "0003d"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the columns and the tokens' table (ADD COLUMN: no table is rewritten)."""
    with op.batch_alter_table("measurements") as batch:
        batch.add_column(sa.Column("uid", sa.String(32), nullable=True))
        batch.create_index("ix_measurements_uid", ["uid"], unique=True)
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("uploaded_by", sa.String(64), nullable=True))
        batch.create_index("ix_runs_uploaded_by", ["uploaded_by"])
    op.create_table(
        "collector_tokens",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME, nullable=True),
    )


def downgrade() -> None:
    """Drop them. The outbox marks stay in meta: the ids they count are the same after a
    later upgrade, so nothing is sent twice or skipped."""
    op.drop_table("collector_tokens")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_uploaded_by")
        batch.drop_column("uploaded_by")
    with op.batch_alter_table("measurements") as batch:
        batch.drop_index("ix_measurements_uid")
        batch.drop_column("uid")
