"""The store's Alembic migrations, shipped inside the package and run by the probe itself.

No ``alembic.ini`` is needed: probe/store/schema.py builds the Alembic configuration in code,
points it at this directory and hands env.py the connection it holds (inside the write
transaction that also made the backup). ``versions/`` holds one file per revision:

    0001  schema 2 exactly as the probe created it before Alembic (meta.schema_version 2)
    0002  the throughput facts the budget and the history read become columns (version 3)
    0003l where a run measured: runs.network_name, asn_source, country_source, location_note
    0003d the daemon's tables: daemon_groups, daemon_sweeps, outages (version unchanged)
    0004c central collection: measurements.uid (nullable: filled on a collector only),
          runs.uploaded_by, collector_tokens (version unchanged: older probes' rows are
          right here too; the probe's outbox is a mark in meta, no column)
    0004v the researchers' views (views.py): latest_verdicts, hourly_verdicts,
          blocked_inputs, throughput_history (version unchanged)
    0004r the report's partial index of blocked and throttled rows (version unchanged)
    0005p PostgreSQL only: measurements and evidence partitioned by month on measured_at
          (partitions.py; evidence.measured_at there); SQLite unchanged (version unchanged)
    0006c SQLite only: measurements kept compact in results and inputs (runs.run_key),
          behind a measurements view with the same columns (compact.py); version 4 on both

Every revision also sets ``meta.schema_version``: probes from before Alembic read only that
row, and refuse a database whose version they do not know rather than writing rows whose
facts a later probe's queries would miss.

A new revision is a new file in ``versions/`` (copy the last; ``script.py.mako`` is the
template ``alembic.command.revision`` uses with ``schema.alembic_config(connection)``).
tests/probe/test_migrations.py compares the models with a migrated database, so a model
changed without a revision, or a revision that does not match the models, fails there.
"""

# The revisions in ``versions/``, oldest first, and so the head. Known without importing
# Alembic (about 7 MB a Raspberry Pi would pay at every open): it is imported only to
# upgrade. tests/probe/test_migrations.py holds these equal to what Alembic finds there.
REVISIONS: tuple[str, ...] = (
    "0001", "0002", "0003l", "0003d", "0004c", "0004v", "0004r", "0005p", "0006c",
)  # fmt: skip
HEAD = REVISIONS[-1]
