"""PostgreSQL's monthly partitions of ``measurements`` and ``evidence`` (revision 0005p).

On PostgreSQL both tables are partitioned by RANGE (``measured_at``), one partition per UTC
month (``measurements_y2026m01``, ``evidence_y2026m01``), plus a DEFAULT partition each
(``measurements_default``) for rows dated outside a sane window (before 2000, or more than
AHEAD in the future: a probe with a broken clock is stored, not refused). A year from
thousands of probes then stays fast to query (a time range reads only its months) and cheap
to prune (retention.py drops a whole month of evidence instead of deleting its rows).

A partitioned table's keys must hold the partition key, so there the primary key of
``measurements`` is (id, measured_at), the uid's uniqueness is UNIQUE (uid, measured_at)
(a probe's row never changes its time, so a retry still conflicts) and ``evidence`` carries
the measurement's ``measured_at`` and points at (id, measured_at). SQLite has rowid ids and
no measured_at in evidence, and its verdict rows in compact.py's shape (revision 0006c):
``metadata_for`` gives each dialect its own.

Partitions exist before rows arrive: ``ensure`` creates the months a batch needs, each
creation serialised between processes by ``pg_advisory_xact_lock`` (two collectors sharing
one database never race), and remembers per process which months exist, so a batch whose
months are known costs no query.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Engine,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    insert,
    text,
)
from sqlalchemy.schema import SchemaItem
from sqlalchemy.sql.dml import Insert

from probe.store.compact import sqlite_metadata
from probe.store.models import UTCDateTime, metadata

PARTITIONED: tuple[str, ...] = ("measurements", "evidence")  # parent before child
FIRST = dt.date(2000, 1, 1)  # months before it: the DEFAULT partition
AHEAD = dt.timedelta(days=7)  # a month starting later than now + AHEAD: DEFAULT too
# pg_advisory_xact_lock's key for creating partitions (any fixed 64-bit number: "probeprt").
LOCK_KEY = 0x70726F6265707274
_PARTITION = re.compile(r"^(measurements|evidence)_(y\d{4}m\d{2}|default)$")

# database URL -> month -> when (time.monotonic) its partitions were last seen to exist.
# Knowledge expires: an operator may drop an archived month by hand (README, "Growing past
# one PostgreSQL"), and a late row of that month must make it again, not fall into DEFAULT
# for as long as the collector runs. Checking again costs one catalog query a minute.
_known: dict[str, dict[dt.date, float]] = {}
_known_lock = threading.Lock()
KNOWN_FOR_S = 60.0


def month_of(at: dt.datetime) -> dt.date:
    """The first day of the UTC month a time falls in."""
    utc = at.astimezone(dt.UTC)
    return dt.date(utc.year, utc.month, 1)


def next_month(month: dt.date) -> dt.date:
    """The first day of the month after."""
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def partition_name(table: str, month: dt.date) -> str:
    """The partition of ``table`` holding ``month``."""
    return f"{table}_y{month.year:04d}m{month.month:02d}"


def default_name(table: str) -> str:
    """The DEFAULT partition of ``table``."""
    return f"{table}_default"


def in_window(month: dt.date, now: dt.datetime | None = None) -> bool:
    """Whether a month gets a partition of its own (else its rows go to DEFAULT)."""
    limit = (now or dt.datetime.now(dt.UTC)) + AHEAD
    return FIRST <= month and dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC) <= limit


def is_partition(name: str) -> bool:
    """Whether a table name is one of the partitions (not a table of the models)."""
    return _PARTITION.match(name) is not None


def include_name(name: str | None, type_: str, _parents: Any) -> bool:
    """Alembic's include_name: compare the models with the tables, not their partitions."""
    return not (type_ == "table" and name is not None and is_partition(name))


def include_object(item: Any, _name: str | None, type_: str, reflected: bool, _to: Any) -> bool:
    """Alembic's include_object: PostgreSQL shows a foreign key into a partitioned table
    once more for each partition it reaches (constraints it keeps itself); not these."""
    if type_ == "foreign_key_constraint" and reflected:
        return not is_partition(item.referred_table.name)
    return True


def metadata_for(dialect: str) -> MetaData:
    """The tables as this dialect holds them: the models partitioned on PostgreSQL, in the
    compact shape on SQLite (compact.py), as written elsewhere."""
    if dialect == "postgresql":
        return pg_metadata()
    if dialect == "sqlite":
        return sqlite_metadata()
    return metadata


@functools.cache
def pg_metadata() -> MetaData:
    """The models with measurements and evidence in their partitioned shape."""
    partitioned = MetaData()
    for table in metadata.sorted_tables:
        if table.name == "measurements":
            _partitioned(table, partitioned, ("id", "measured_at"))
        elif table.name == "evidence":
            at: Column[dt.datetime] = Column("measured_at", UTCDateTime(), nullable=False)
            # Its measurement's time, so a month of evidence is one partition to drop.
            to = ForeignKeyConstraint(
                ["measurement_id", "measured_at"],
                ["measurements.id", "measurements.measured_at"],
                ondelete="CASCADE",
            )
            _partitioned(table, partitioned, ("measurement_id", "measured_at"), at, to)
        else:
            table.to_metadata(partitioned)
    return partitioned


def evidence_table() -> Table:
    """PostgreSQL's evidence table (with measured_at), for inserts there."""
    return pg_metadata().tables["evidence"]


def evidence_insert(
    dialect: str, measurement_id: int, measured_at: dt.datetime, data: Any
) -> Insert:
    """INSERT of an evidence row into the table as this dialect holds it (measured_at is a
    column on PostgreSQL only)."""
    values = {"measurement_id": measurement_id, "data": data}
    if dialect == "postgresql":
        values["measured_at"] = measured_at
    return insert(metadata_for(dialect).tables["evidence"]).values(values)


def _partitioned(
    source: Table, metadata: MetaData, key: tuple[str, ...], *extra: SchemaItem
) -> Table:
    """A copy of a model's table partitioned by month: its keys and unique indexes hold
    measured_at (PostgreSQL requires it); evidence's own foreign key is replaced by extra."""
    columns = [
        Column(
            c.name, c.type,
            *[ForeignKey(f.target_fullname) for f in c.foreign_keys if source.name != "evidence"],
            nullable=c.nullable, autoincrement=c.autoincrement,
        )
        for c in source.columns
    ]  # fmt: skip
    checks = [
        CheckConstraint(c.sqltext, name=c.name)
        for c in source.constraints
        if isinstance(c, CheckConstraint)
    ]
    table = Table(
        source.name, metadata, *columns, *extra, *checks, PrimaryKeyConstraint(*key),
        postgresql_partition_by="RANGE (measured_at)",
    )  # fmt: skip
    for index in source.indexes:
        names = [c.name for c in index.columns] + (["measured_at"] if index.unique else [])
        kwargs = dict(index.dialect_kwargs)
        if "sqlite_where" in kwargs:
            # A partial index holds the same rows here: the models name only SQLite's WHERE,
            # as postgresql_where would load this dialect into every probe (models.py).
            kwargs["postgresql_where"] = kwargs["sqlite_where"]
        Index(index.name, *(table.c[n] for n in names), unique=index.unique, **kwargs)
    return table


def create_defaults(conn: Connection) -> None:
    """The DEFAULT partitions (a new database, or revision 0005p)."""
    for table in PARTITIONED:
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {default_name(table)} PARTITION OF {table} DEFAULT"
        )


def ensure(
    engine: Engine, times: Iterable[dt.datetime], *, clock: Callable[[], float] = time.monotonic
) -> None:
    """Make sure the months of these times have their partitions (PostgreSQL; else nothing).

    In a transaction of its own, committed before the caller's write begins: a partition
    made inside a write that then rolled back would be remembered but gone (its rows would
    still land, in DEFAULT). Months this process saw in the last KNOWN_FOR_S cost nothing.
    """
    if engine.dialect.name != "postgresql":
        return
    key = engine.url.render_as_string(hide_password=True)
    now = dt.datetime.now(dt.UTC)
    wanted = {m for m in map(month_of, times) if in_window(m, now)}
    seen_at = clock()
    with _known_lock:
        known = _known.get(key, {})
        todo = {m for m in wanted if seen_at - known.get(m, -math.inf) >= KNOWN_FOR_S}
    if not todo:
        return
    with engine.begin() as conn:
        create_months(conn, sorted(todo))
    with _known_lock:
        _known.setdefault(key, {}).update(dict.fromkeys(todo, seen_at))


def forget(engine: Engine) -> None:
    """Forget the months known for this database (after partitions were dropped)."""
    with _known_lock:
        _known.pop(engine.url.render_as_string(hide_password=True), None)


def create_months(conn: Connection, months: Iterable[dt.date]) -> None:
    """Inside the caller's transaction: create the months' partitions that are missing.

    Rows of such a month already in DEFAULT (dated ahead by a clock that was wrong then)
    are moved into the new partitions: PostgreSQL refuses to create a partition for rows
    its DEFAULT holds.
    """
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    for month in months:
        names = [partition_name(t, month) for t in PARTITIONED]
        found = conn.execute(
            text("SELECT count(to_regclass(n)) FROM unnest(CAST(:names AS text[])) AS n"),
            {"names": names},
        ).scalar_one()
        if found == len(names):
            continue
        bounds = {"start": month_start(month), "end": month_start(next_month(month))}
        moved = _stash_default_rows(conn, bounds)
        for table, name in zip(PARTITIONED, names, strict=True):
            conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} FOR VALUES FROM "
                f"('{bounds['start'].isoformat()}') TO ('{bounds['end'].isoformat()}')"
            )
        if moved:
            for table in PARTITIONED:
                conn.exec_driver_sql(f"INSERT INTO {table} SELECT * FROM moving_{table}")
                conn.exec_driver_sql(f"DROP TABLE moving_{table}")


_IN_MONTH = "measured_at >= :start AND measured_at < :end"


def _stash_default_rows(conn: Connection, bounds: dict[str, dt.datetime]) -> bool:
    """Copy out and delete the month's rows if DEFAULT holds some; whether it did."""
    held = conn.execute(
        text(
            f"SELECT EXISTS (SELECT 1 FROM measurements_default WHERE {_IN_MONTH}) "
            f"OR EXISTS (SELECT 1 FROM evidence_default WHERE {_IN_MONTH})"
        ),
        bounds,
    ).scalar_one()
    if not held:
        return False
    # All the month's evidence (some may point at DEFAULT's measurements), then DEFAULT's
    # measurements: evidence first, so the delete cascades to nothing.
    sources = {"evidence": "evidence", "measurements": "measurements_default"}
    for table in reversed(PARTITIONED):
        conn.execute(
            text(
                f"CREATE TEMPORARY TABLE moving_{table} ON COMMIT DROP AS "
                f"SELECT * FROM {sources[table]} WHERE {_IN_MONTH}"
            ),
            bounds,
        )
        conn.execute(text(f"DELETE FROM {sources[table]} WHERE {_IN_MONTH}"), bounds)
    return True


def month_start(month: dt.date) -> dt.datetime:
    """Midnight UTC on the month's first day."""
    return dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)


def months(conn: Connection, table: str) -> list[tuple[str, dt.date]]:
    """The monthly partitions of ``table`` that exist, oldest first (not DEFAULT)."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:table AS regclass)"
        ),
        {"table": table},
    ).scalars()
    found = []
    for name in rows:
        m = re.fullmatch(rf"{table}_y(\d{{4}})m(\d{{2}})", name)
        if m:
            found.append((name, dt.date(int(m[1]), int(m[2]), 1)))
    return sorted(found, key=lambda f: f[1])
