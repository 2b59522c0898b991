"""PostgreSQL: measurements and evidence partitioned by month on measured_at.

Revision ID: 0005p
Revises: 0004r

On PostgreSQL the two tables become RANGE partitioned by ``measured_at``, one partition per
UTC month and a DEFAULT one each (probe/store/partitions.py says why and how they are named):
the primary key of measurements is (id, measured_at), the uid's uniqueness (uid,
measured_at), evidence gains its measurement's ``measured_at`` and points at (id,
measured_at). PostgreSQL cannot partition a table in place, so each is rebuilt: the old one
renamed aside with its indexes and sequence, the new one created and filled with every row
and id, the sequence carried on from where it was, the old one dropped; the views of 0004v,
which read measurements, are dropped before and created again after. One transaction, as
every upgrade: a failure leaves 0004r whole. It rewrites both tables, so it takes as long
as copying them, with the collector stopped.

SQLite is unchanged (nothing to do): the embedded store gains nothing from partitions and
keeps its rowid ids. meta.schema_version stays 3: a probe that knows 3 writes the same
columns of measurements, and a probe from before this revision refuses a database at a
revision it does not know (schema.py), so none writes evidence without its measured_at.
"""

from __future__ import annotations

import datetime as dt

from alembic import op
from sqlalchemy import Connection, text

from probe.store.partitions import create_defaults, create_months, in_window
from probe.store.views import NAMES, V0004V, create_views, drop_views

revision = "0005p"
down_revision: str | None = "0004r"
branch_labels: str | None = None
depends_on: str | None = None

_COLUMNS = """\
  id BIGSERIAL NOT NULL,
  run_id VARCHAR(32) NOT NULL REFERENCES runs (run_id),
  service VARCHAR(128) NOT NULL,
  category VARCHAR(32) NOT NULL,
  input TEXT NOT NULL,
  verdict VARCHAR(16) NOT NULL,
  layer VARCHAR(8),
  detail VARCHAR(32) NOT NULL,
  rule VARCHAR(64) NOT NULL,
  reason TEXT NOT NULL,
  measured_at TIMESTAMP WITH TIME ZONE NOT NULL,
  duration_ms FLOAT NOT NULL,
  throughput_kbps FLOAT,
  baseline_kbps FLOAT,
  throughput_bytes BIGINT,
  throughput_address VARCHAR(45),
  uid VARCHAR(32),
  CONSTRAINT ck_measurements_verdict
    CHECK (verdict IN ('accessible', 'blocked', 'throttled', 'inconclusive')),"""
_NAMES = (
    "id, run_id, service, category, input, verdict, layer, detail, rule, reason, "
    "measured_at, duration_ms, throughput_kbps, baseline_kbps, throughput_bytes, "
    "throughput_address, uid"
)
_INDEXES = (
    "CREATE INDEX ix_measurements_run_id ON measurements (run_id)",
    "CREATE INDEX ix_measurements_service ON measurements (service)",
    "CREATE INDEX ix_measurements_measured_at ON measurements (measured_at)",
    "CREATE INDEX ix_measurements_interference ON measurements (verdict, service) "
    "WHERE verdict IN ('blocked', 'throttled')",
)
PARTITIONED = (
    f"CREATE TABLE measurements (\n{_COLUMNS}\n  PRIMARY KEY (id, measured_at)\n)"
    " PARTITION BY RANGE (measured_at)",
    *_INDEXES,
    "CREATE UNIQUE INDEX ix_measurements_uid ON measurements (uid, measured_at)",
    "CREATE TABLE evidence (\n  measurement_id BIGINT NOT NULL,\n  data JSONB NOT NULL,\n"
    "  measured_at TIMESTAMP WITH TIME ZONE NOT NULL,\n"
    "  PRIMARY KEY (measurement_id, measured_at),\n"
    "  FOREIGN KEY (measurement_id, measured_at) REFERENCES measurements (id, measured_at)"
    " ON DELETE CASCADE\n) PARTITION BY RANGE (measured_at)",
)
# Revision 0004r's tables, as the downgrade makes them again.
PLAIN = (
    f"CREATE TABLE measurements (\n{_COLUMNS}\n  PRIMARY KEY (id)\n)",
    *_INDEXES,
    "CREATE UNIQUE INDEX ix_measurements_uid ON measurements (uid)",
    "CREATE TABLE evidence (\n  measurement_id BIGINT NOT NULL PRIMARY KEY\n"
    "    REFERENCES measurements (id) ON DELETE CASCADE,\n  data JSONB NOT NULL\n)",
)
OLD = "_0004"  # suffix of the tables (and their indexes, sequence) being replaced


def upgrade() -> None:
    """Rebuild both tables partitioned (PostgreSQL only)."""
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    _aside(conn)
    for sql in PARTITIONED:
        conn.exec_driver_sql(sql)
    create_defaults(conn)
    months = conn.execute(
        text(
            f"SELECT DISTINCT CAST(date_trunc('month', measured_at AT TIME ZONE 'UTC') AS date) "
            f"FROM measurements{OLD}"
        )
    ).scalars()
    create_months(conn, sorted(m for m in months if in_window(m, dt.datetime.now(dt.UTC))))
    _fill(
        conn,
        "SELECT e.measurement_id, e.data, m.measured_at FROM evidence_0004 AS e "
        "JOIN measurements_0004 AS m ON m.id = e.measurement_id",
    )


def downgrade() -> None:
    """Rebuild both tables unpartitioned, as 0004r had them (PostgreSQL only)."""
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    _aside(conn)
    for sql in PLAIN:
        conn.exec_driver_sql(sql)
    _fill(conn, "SELECT measurement_id, data FROM evidence_0004")


def _aside(conn: Connection) -> None:
    """Drop the views; rename both tables, their indexes and the id sequence out of the way
    (index and sequence names are the schema's, not the table's)."""
    drop_views(conn, NAMES)
    for table in ("measurements", "evidence"):
        indexes = conn.execute(
            text(
                "SELECT c.relname FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
                "WHERE i.indrelid = CAST(:t AS regclass)"
            ),
            {"t": table},
        ).scalars()
        for index in list(indexes):
            conn.exec_driver_sql(f'ALTER INDEX "{index}" RENAME TO "{index}{OLD}"')
        conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {table}{OLD}")
    conn.exec_driver_sql(f"ALTER SEQUENCE measurements_id_seq RENAME TO measurements{OLD}_id_seq")


def _fill(conn: Connection, evidence: str) -> None:
    """Copy every row into the new tables, carry the sequence on, drop the old tables, and
    create the views again."""
    conn.exec_driver_sql(
        f"INSERT INTO measurements ({_NAMES}) SELECT {_NAMES} FROM measurements{OLD}"
    )
    columns = "measurement_id, data" + (", measured_at" if "measured_at" in evidence else "")
    conn.exec_driver_sql(f"INSERT INTO evidence ({columns}) {evidence}")
    conn.exec_driver_sql(
        f"SELECT setval('measurements_id_seq', last_value, is_called) FROM measurements{OLD}_id_seq"
    )
    conn.exec_driver_sql(f"DROP TABLE evidence{OLD}")
    conn.exec_driver_sql(f"DROP TABLE measurements{OLD}")
    create_views(conn, V0004V)
