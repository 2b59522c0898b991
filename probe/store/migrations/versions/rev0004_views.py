"""The researchers' views: latest_verdicts, hourly_verdicts, blocked_inputs, throughput_history.

Revision ID: 0004v
Revises: 0004c

Views only, so meta.schema_version stays (3): probes that know it write the same tables,
and the views read them. The SQL is probe/store/views.py's ``V0004V``, fixed text that is
never edited (tests/probe/test_views.py pins its digest), which schema.py also executes for a
new database: one definition, and no dependency on the models.
"""

from __future__ import annotations

from alembic import op

from probe.store.views import NAMES, V0004V, create_views, drop_views

revision = "0004v"
down_revision: str | None = "0004c"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the four views."""
    create_views(op.get_bind(), V0004V)


def downgrade() -> None:
    """Drop them (the tables are untouched)."""
    drop_views(op.get_bind(), NAMES)
