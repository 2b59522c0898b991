"""Where a run measured: the sources of its asn and country, the AS's name, why unknown.

Revision ID: 0003l
Revises: 0002

``runs.asn`` and ``runs.country`` were only what the volunteer declared; a sweep may now
detect them (the control helper's GET /v1/whoami, or vantage.geoip_db), and records which:
``asn_source`` and ``country_source`` are "declared", "helper" or "geoip_db" (NULL: unknown),
``network_name`` the AS's organisation, ``location_note`` why a value is unknown. Older runs'
declared values are marked "declared". meta.schema_version is left as it is (the merger of
this branch chains the revisions and sets it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003l"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

# A lightweight table: the backfill must not depend on the models of a later day.
_runs = sa.table(
    "runs",
    sa.column("asn", sa.BigInteger()),
    sa.column("country", sa.String()),
    sa.column("asn_source", sa.String()),
    sa.column("country_source", sa.String()),
)


def upgrade() -> None:
    """Add the four columns; what older runs hold was declared."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("network_name", sa.String(256), nullable=True))
        batch.add_column(sa.Column("asn_source", sa.String(16), nullable=True))
        batch.add_column(sa.Column("country_source", sa.String(16), nullable=True))
        batch.add_column(sa.Column("location_note", sa.Text(), nullable=True))
    op.execute(_runs.update().where(_runs.c.asn.is_not(None)).values(asn_source="declared"))
    op.execute(_runs.update().where(_runs.c.country.is_not(None)).values(country_source="declared"))


def downgrade() -> None:
    """Drop the four columns (detected values stay in asn and country, unmarked)."""
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("location_note")
        batch.drop_column("country_source")
        batch.drop_column("asn_source")
        batch.drop_column("network_name")
