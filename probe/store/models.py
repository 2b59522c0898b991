"""The stored shapes: the SQLAlchemy tables (the frozen rows the store hands out are rows.py).

Tables (portable to PostgreSQL; SQLite is the embedded default):

    meta          key -> value; holds ``schema_version`` (what probes before Alembic check)
    runs          one sweep: when, from which declared vantage, with which settings
    measurements  one input per run: its verdict, without the evidence
    evidence      measurement_id -> JSON {"verdict_evidence": ..., "observations": [...]}
    daemon_groups the daemon's schedule, one row per group (what ``probe status`` reads)
    daemon_sweeps which group, plan and network each of the daemon's runs was
    outages       when a vantage lost connectivity and got it back (ended_at NULL: still out)
    collector_tokens  the central collector's upload tokens, hashed (probe/collector/tokens.py)

Evidence lives in its own table so listing and exporting never read the bulky JSON, and
nothing queries into it: what a query reads is a column. These tables, on ``metadata``, are
the head of the migrations in migrations/versions/ (tests/probe/test_migrations.py compares
the two); a change here needs a new revision there.
SQLAlchemy Core, not its ORM: the store reads and writes plain rows (rows.py converts them
to the frozen dataclasses callers get), and importing sqlalchemy.orm alone cost the daemon
about 6 MB of memory. The tables keep the names the ORM's classes had (``Run`` is the
``runs`` Table), so scripts that insert through them are unchanged. Nothing here imports
PostgreSQL's dialect (2 MB more): JSONB and the partial index's WHERE are PostgreSQL's only
where PostgreSQL runs (compressed_json.py, partitions.pg_metadata).
On PostgreSQL, measurements and evidence are partitioned by month on measured_at (revision
0005p): partitions.py derives that shape from these tables (metadata_for), with the
partition key in their keys (measurements (id, measured_at), UNIQUE (uid, measured_at)) and
evidence.measured_at, a column only PostgreSQL has. On SQLite (revision 0006c) compact.py
derives the shape from these tables too: measurements' rows in ``results`` (integer run key,
input id and microseconds) and ``inputs``, ``runs.run_key``, and a ``measurements`` VIEW
with this table's columns, which the queries read as they read the table (writes go to
results).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator

from probe.classify.verdict import VERDICTS
from probe.store.compressed_json import CompressedJSON, JSONType

# meta.schema_version at the head revision (migrations/__init__.py): 2 added runs.status
# "failed" and "aborted"; 3 (revision 0002) the throughput columns of measurements; the
# revisions up to 0005p added only what older probes may leave out (nullable columns,
# tables, views). 4 (revision 0006c): on SQLite measurements became a view over results and
# inputs, which a probe that knows 3 would try to write into.
SCHEMA_VERSION = 4
# The rows the report's partial index holds (revision 0004r spells it the same).
INTERFERENCE_ROWS = text("verdict IN ('blocked', 'throttled')")

RUN_STATUSES: tuple[str, ...] = (
    "running",  # a sweep owns it now, or died without a word (a later open says "aborted")
    "completed",
    "interrupted",  # Ctrl-C or SIGTERM
    "timed_out",
    "offline",
    "failed",  # an error ended the sweep: storage (a full disk) or a bug
    "aborted",  # found "running" by a later open, with no live owner (kill -9, power loss)
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; a central database wants 64 bits.
IdType = BigInteger().with_variant(Integer(), "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    """SQL for a CHECK that keeps a column inside a closed set."""
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend, whatever the backend keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Refuse naive times; convert to UTC, and drop the offset where it would be lost."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps timezone-aware times")
        value = value.astimezone(dt.UTC)
        # SQLite (and MySQL) store no offset; naive UTC text also sorts in time order there.
        if dialect.name != "postgresql":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        """Give back an aware UTC datetime, whether or not the backend kept the offset."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


metadata = MetaData()


def _column(name: str, type_: Any, *args: Any, null: bool = False, **kwargs: Any) -> Column[Any]:
    """A column NOT NULL unless ``null`` (what the ORM's Mapped[X] and Mapped[X | None]
    declared, which the migrations spell out)."""
    return Column(name, type_, *args, nullable=null, **kwargs)


Meta = Table(
    "meta", metadata,  # facts about the database itself (its schema version)
    _column("key", String(64), primary_key=True),
    _column("value", Text),
)  # fmt: skip

Run = Table(
    "runs", metadata,  # one sweep
    _column("run_id", String(32), primary_key=True),  # uuid4 hex
    _column("started_at", UTCDateTime(), index=True),
    _column("finished_at", UTCDateTime(), null=True),
    _column("status", String(16)),
    _column("probe_version", String(64)),
    _column("vantage_name", String(128), null=True),
    _column("network_type", String(32), null=True),
    _column("asn", BigInteger(), null=True),  # 4-byte ASNs exceed int4
    _column("country", String(2), null=True),
    _column("settings", JSONType()),
    _column("counts", JSONType(), null=True),
    # Where asn and country came from (declared, helper, geoip_db; NULL: unknown), the AS's
    # name, and why a value is unknown (revision 0003l). Never the vantage's address.
    _column("network_name", String(256), null=True),
    _column("asn_source", String(16), null=True),
    _column("country_source", String(16), null=True),
    _column("location_note", Text, null=True),
    # On a central collector: the name of the token that uploaded the run (revision 0004c);
    # NULL on a probe's own database.
    _column("uploaded_by", String(64), null=True, index=True),
    CheckConstraint(_in("status", RUN_STATUSES), name="ck_runs_status"),
)  # fmt: skip

Measurement = Table(
    "measurements", metadata,  # one input measured in one run, without its evidence
    _column("id", IdType, primary_key=True, autoincrement=True),
    _column("run_id", String(32), ForeignKey("runs.run_id"), index=True),
    _column("service", String(128), index=True),
    _column("category", String(32)),
    _column("input", Text),
    _column("verdict", String(16)),
    _column("layer", String(8), null=True),
    _column("detail", String(32)),
    _column("rule", String(64)),
    _column("reason", Text),
    _column("measured_at", UTCDateTime(), index=True),
    _column("duration_ms", Float),
    _column("throughput_kbps", Float, null=True),
    _column("baseline_kbps", Float, null=True),
    # What the daily budget and the past-rates history read (budgets.py); revision 0002.
    _column("throughput_bytes", BigInteger(), null=True),
    _column("throughput_address", String(45), null=True),  # an IP address
    # On a collector: the key an upload is idempotent by, sha256(token name, NUL, the probe's
    # "run_id:id")[:32] (probe/collector/ingest.py; revision 0004c). NULL on a probe's own
    # rows: there (run_id, id) is the key already, and a NULL costs ~8 bytes a row (its index
    # entry) where a uuid4 hex cost ~73 with its index (SQLite, measured with dbstat).
    _column("uid", String(32), null=True, unique=True, index=True),
    CheckConstraint(_in("verdict", VERDICTS), name="ck_measurements_verdict"),
    # Only the blocked and throttled rows, which the report reads alone (revision 0004r).
    # PostgreSQL's WHERE is added by partitions.pg_metadata, the only shape PostgreSQL
    # gets: naming postgresql_where here would import that dialect into every SQLite probe.
    Index("ix_measurements_interference", "verdict", "service",
          sqlite_where=INTERFERENCE_ROWS),
)  # fmt: skip

Evidence = Table(
    "evidence", metadata,  # the verdict's evidence and every observation behind it
    _column("measurement_id", IdType, ForeignKey("measurements.id", ondelete="CASCADE"),
            primary_key=True),
    # zlib-compressed on SQLite, where evidence is most of the file (compressed_json.py).
    _column("data", CompressedJSON()),
)  # fmt: skip

CollectorToken = Table(
    "collector_tokens", metadata,  # a probe's upload token: only its SHA-256 is kept
    _column("id", IdType, primary_key=True, autoincrement=True),
    _column("name", String(64), unique=True),
    _column("token_hash", String(64), unique=True),  # sha256 hex
    _column("created_at", UTCDateTime()),
    _column("revoked_at", UTCDateTime(), null=True),
)  # fmt: skip

DaemonGroupState = Table(
    "daemon_groups", metadata,  # a group of the daemon's schedule (revision 0003d)
    _column("name", String(64), primary_key=True),
    _column("pid", Integer()),  # the daemon's; status checks it is alive
    _column("daemon_started_at", UTCDateTime()),
    _column("every_s", Float),
    _column("last_started_at", UTCDateTime(), null=True),
    _column("last_finished_at", UTCDateTime(), null=True),
    # No foreign key: pruning may drop old runs while the schedule still names one.
    _column("last_run_id", String(32), null=True),
    _column("last_status", String(16), null=True),
    _column("next_at", UTCDateTime(), null=True),
    _column("updated_at", UTCDateTime()),
)  # fmt: skip

DaemonSweep = Table(
    "daemon_sweeps", metadata,  # a run the daemon started: group, plan, network
    _column("run_id", String(32), primary_key=True),
    _column("group", String(64)),
    _column("planned_at", UTCDateTime()),
    _column("started_at", UTCDateTime(), index=True),
    _column("network", String(16), null=True),  # NetworkState.digest()
    _column("throughput", Boolean()),
)  # fmt: skip

Outage = Table(
    "outages", metadata,  # a window in which a vantage could reach no reference host
    _column("id", IdType, primary_key=True, autoincrement=True),
    _column("vantage_name", String(128), null=True),
    _column("started_at", UTCDateTime(), index=True),
    _column("ended_at", UTCDateTime(), null=True),
    _column("detected_by", String(16)),  # "sweep" found it offline; "route" gone
    _column("network", String(16), null=True),
)  # fmt: skip
