"""The throughput facts that queries read become columns of measurements.

Revision ID: 0002
Revises: 0001

The daily byte budget summed ``evidence.data -> verdict_evidence.throughput_bytes`` and the
past-rates history read ``verdict_evidence.throughput.address``; both are now columns the
writer fills, and this revision copies them out of the evidence of older rows (the evidence
keeps them too, for readers). meta.schema_version becomes 3, which probes from before
Alembic refuse: they would write rows without the columns, and the budget would miss them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# Lightweight tables: the backfill must not depend on the models of a later day.
_measurements = sa.table(
    "measurements",
    sa.column("id", sa.Integer()),
    sa.column("throughput_bytes", sa.BigInteger()),
    sa.column("throughput_address", sa.String()),
)
_evidence = sa.table(
    "evidence", sa.column("measurement_id", sa.Integer()), sa.column("data", sa.JSON())
)
_meta = sa.table("meta", sa.column("key", sa.String()), sa.column("value", sa.String()))


def upgrade() -> None:
    """Add throughput_bytes and throughput_address, filled from the evidence."""
    with op.batch_alter_table("measurements") as batch:
        batch.add_column(sa.Column("throughput_bytes", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("throughput_address", sa.String(45), nullable=True))
    # json_extract reads TEXT: every row of a database at 0001 predates the BLOBs of
    # compressed evidence (compressed_json.py), which only a probe at this head writes.
    spent = _evidence.c.data[("verdict_evidence", "throughput_bytes")].as_integer()
    address = _evidence.c.data[("verdict_evidence", "throughput", "address")].as_string()
    op.execute(
        _measurements.update().values(
            throughput_bytes=_where_evidence(spent), throughput_address=_where_evidence(address)
        )
    )
    op.execute(_meta.update().where(_meta.c.key == "schema_version").values(value="3"))


def _where_evidence(fact: sa.ColumnElement[object]) -> sa.ScalarSelect[object]:
    """The fact from this row's evidence (NULL where absent, or without evidence)."""
    return sa.select(fact).where(_evidence.c.measurement_id == _measurements.c.id).scalar_subquery()


def downgrade() -> None:
    """Drop the two columns (the evidence still holds their facts)."""
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("throughput_address")
        batch.drop_column("throughput_bytes")
    op.execute(_meta.update().where(_meta.c.key == "schema_version").values(value="2"))
