"""Alembic's entry point: run the revisions on the connection the probe hands over.

The probe opens the connection, takes SQLite's write lock and makes the backup before it
calls Alembic (probe/store/schema.py), so this runs inside that transaction and never opens
a connection of its own.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from probe.store.partitions import include_name, include_object, metadata_for

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "the probe runs its own migrations: open the database with probe.store.open_database"
    )
context.configure(
    connection=connection,
    # PostgreSQL's partitioned tables (partitions.py), compared without their partitions.
    target_metadata=metadata_for(connection.dialect.name),
    include_name=include_name,
    include_object=include_object,
    # SQLite alters little in place; batch mode rebuilds a table where it must.
    render_as_batch=True,
)
with context.begin_transaction():  # the caller's transaction: this adds none
    context.run_migrations()
