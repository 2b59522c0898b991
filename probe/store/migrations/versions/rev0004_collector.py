"""Central collection: a measurement id made on the probe, the upload mark, the tokens.

Revision ID: 0004c
Revises: 0003d

``measurements.uid`` (uuid4 hex, unique, NOT NULL) is made by the probe when it records a
measurement: the collector is idempotent by it, so a retried upload never duplicates. Older
rows get fresh uids here. ``measurements.uploaded_at`` is the probe's outbox: NULL until a
collector acknowledged the row (a column, not an outbox table: no second row per
measurement to keep in step, and pruning or deleting a measurement cannot leave an orphan
behind). ``runs.uploaded_by`` names, on a collector, the token that uploaded the run;
``collector_tokens`` holds the collector's tokens, hashed.

meta.schema_version becomes 4: a probe that knows only 3 would insert measurements without
a uid, which the NOT NULL refuses, so it must refuse the database instead.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

# As revision 0001 spells them: a revision must not depend on the models of a later day.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)

revision = "0004c"
down_revision: str | None = "0003d"
branch_labels: str | None = None
depends_on: str | None = None

_measurements = sa.table("measurements", sa.column("id", ID), sa.column("uid", sa.String()))
_meta = sa.table("meta", sa.column("key", sa.String()), sa.column("value", sa.String()))


def upgrade() -> None:
    """Add the columns (uids for every older row) and the tokens' table."""
    with op.batch_alter_table("measurements") as batch:
        batch.add_column(sa.Column("uid", sa.String(32), nullable=True))
        batch.add_column(sa.Column("uploaded_at", TIME, nullable=True))
    _backfill_uids()
    with op.batch_alter_table("measurements") as batch:
        batch.alter_column("uid", existing_type=sa.String(32), nullable=False)
        batch.create_index("ix_measurements_uid", ["uid"], unique=True)
        batch.create_index("ix_measurements_uploaded_at", ["uploaded_at"])
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
    op.execute(_meta.update().where(_meta.c.key == "schema_version").values(value="4"))


def _backfill_uids() -> None:
    """A fresh uid for every existing measurement, in batches (a year is ~10^5 rows)."""
    conn = op.get_bind()
    ids = list(conn.execute(sa.select(_measurements.c.id)).scalars())
    update = (
        _measurements.update()
        .where(_measurements.c.id == sa.bindparam("mid"))
        .values(uid=sa.bindparam("new_uid"))
    )
    for start in range(0, len(ids), 5000):
        rows = [{"mid": i, "new_uid": uuid.uuid4().hex} for i in ids[start : start + 5000]]
        conn.execute(update, rows)


def downgrade() -> None:
    """Drop them (the uids are lost: a later upgrade makes new ones)."""
    op.drop_table("collector_tokens")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_uploaded_by")
        batch.drop_column("uploaded_by")
    with op.batch_alter_table("measurements") as batch:
        batch.drop_index("ix_measurements_uploaded_at")
        batch.drop_index("ix_measurements_uid")
        batch.drop_column("uploaded_at")
        batch.drop_column("uid")
    op.execute(_meta.update().where(_meta.c.key == "schema_version").values(value="3"))
