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
nothing queries into it: what a query reads is a column. These classes are the head of the
migrations in migrations/versions/ (tests/probe/test_migrations.py compares the two); a
change here needs a new revision there.
On PostgreSQL, measurements and evidence are partitioned by month on measured_at (revision
0005p): partitions.py derives that shape from these classes (metadata_for), with the
partition key in their keys (measurements (id, measured_at), UNIQUE (uid, measured_at)) and
evidence.measured_at, a column only PostgreSQL has. On SQLite (revision 0006c) compact.py
derives the shape from these classes too: measurements' rows in ``results`` (integer run key,
input id and microseconds) and ``inputs``, ``runs.run_key``, and a ``measurements`` VIEW
with this class's columns, which the ORM reads as it read the table (writes go to results).
Callers never get ORM objects: rows.py's frozen dataclasses are detached copies, so nothing
lazy-loads after a session has closed, and its functions convert the probe's records to rows
and rows to those copies.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from probe.classify.verdict import VERDICTS
from probe.store.compressed_json import CompressedJSON

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

# JSONB on PostgreSQL so a central database can index into evidence; plain JSON elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")
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


class Base(DeclarativeBase):
    """Declarative base of the probe's tables."""


class Meta(Base):
    """Facts about the database itself (its schema version)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Run(Base):
    """One sweep, as stored."""

    __tablename__ = "runs"
    __table_args__ = (CheckConstraint(_in("status", RUN_STATUSES), name="ck_runs_status"),)

    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    probe_version: Mapped[str] = mapped_column(String(64))
    vantage_name: Mapped[str | None] = mapped_column(String(128))
    network_type: Mapped[str | None] = mapped_column(String(32))
    asn: Mapped[int | None] = mapped_column(BigInteger())  # 4-byte ASNs exceed int4
    country: Mapped[str | None] = mapped_column(String(2))
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType)
    counts: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Where asn and country came from (declared, helper, geoip_db; NULL: unknown), the AS's
    # name, and why a value is unknown (revision 0003l). Never the vantage's address.
    network_name: Mapped[str | None] = mapped_column(String(256))
    asn_source: Mapped[str | None] = mapped_column(String(16))
    country_source: Mapped[str | None] = mapped_column(String(16))
    location_note: Mapped[str | None] = mapped_column(Text)
    # On a central collector: the name of the token that uploaded the run (revision 0004c);
    # NULL on a probe's own database.
    uploaded_by: Mapped[str | None] = mapped_column(String(64), index=True)


class Measurement(Base):
    """One input measured in one run, without its evidence."""

    __tablename__ = "measurements"
    __table_args__ = (
        CheckConstraint(_in("verdict", VERDICTS), name="ck_measurements_verdict"),
        # Only the blocked and throttled rows, which the report reads alone (revision 0004r).
        Index(
            "ix_measurements_interference", "verdict", "service",
            sqlite_where=INTERFERENCE_ROWS, postgresql_where=INTERFERENCE_ROWS,
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), index=True)
    service: Mapped[str] = mapped_column(String(128), index=True)
    category: Mapped[str] = mapped_column(String(32))
    input: Mapped[str] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(String(16))
    layer: Mapped[str | None] = mapped_column(String(8))
    detail: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    measured_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    duration_ms: Mapped[float] = mapped_column(Float)
    throughput_kbps: Mapped[float | None] = mapped_column(Float)
    baseline_kbps: Mapped[float | None] = mapped_column(Float)
    # What the daily budget and the past-rates history read (budgets.py); revision 0002.
    throughput_bytes: Mapped[int | None] = mapped_column(BigInteger())
    throughput_address: Mapped[str | None] = mapped_column(String(45))  # an IP address
    # On a collector: the key an upload is idempotent by, sha256(token name, NUL, the probe's
    # "run_id:id")[:32] (probe/collector/ingest.py; revision 0004c). NULL on a probe's own
    # rows: there (run_id, id) is the key already, and a NULL costs ~8 bytes a row (its index
    # entry) where a uuid4 hex cost ~73 with its index (SQLite, measured with dbstat).
    uid: Mapped[str | None] = mapped_column(String(32), unique=True, index=True)


class Evidence(Base):
    """The verdict's evidence and every observation behind a measurement."""

    __tablename__ = "evidence"

    measurement_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("measurements.id", ondelete="CASCADE"), primary_key=True
    )
    # zlib-compressed on SQLite, where evidence is most of the file (compressed_json.py).
    data: Mapped[dict[str, Any]] = mapped_column(CompressedJSON)


class CollectorToken(Base):
    """A probe's upload token on a central collector: only its SHA-256 is kept."""

    __tablename__ = "collector_tokens"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class DaemonGroupState(Base):
    """One group of the daemon's schedule: its last sweep and its next (revision 0003d)."""

    __tablename__ = "daemon_groups"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer())  # the daemon's; status checks it is alive
    daemon_started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    every_s: Mapped[float] = mapped_column(Float)
    last_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # No foreign key: pruning may drop old runs while the schedule still names one.
    last_run_id: Mapped[str | None] = mapped_column(String(32))
    last_status: Mapped[str | None] = mapped_column(String(16))
    next_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class DaemonSweep(Base):
    """A run the daemon started: its group, when it was planned, the network it measured."""

    __tablename__ = "daemon_sweeps"

    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    group: Mapped[str] = mapped_column(String(64))
    planned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    network: Mapped[str | None] = mapped_column(String(16))  # NetworkState.digest()
    throughput: Mapped[bool] = mapped_column(Boolean())


class Outage(Base):
    """A window in which a vantage could reach no reference host."""

    __tablename__ = "outages"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    vantage_name: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    detected_by: Mapped[str] = mapped_column(String(16))  # "sweep" found it offline; "route" gone
    network: Mapped[str | None] = mapped_column(String(16))


def cast_table(table: Any) -> Table:
    """A model's ``__table__`` as the Table it is (typed a FromClause by SQLAlchemy)."""
    assert isinstance(table, Table)
    return table
