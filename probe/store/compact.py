"""SQLite's compact shape of measurements (revision 0006c): ``results`` and ``inputs`` behind
a ``measurements`` view.

A verdict row is kept for ever (retention.py prunes only evidence), so on a probe's own
SQLite file the rows are most of a year's bytes. Three things made them big: the run's
32-character hex id in each row and in its index, the time as SQLAlchemy's 26-character
text in the row and in its index, and the service, category and input repeated in every
row (and the service again in two indexes). Here:

    runs.run_key an integer per run (SQLite only; NULL until the run's first result): an
                 explicit column, since VACUUM may renumber the rowids of a table without
                 an INTEGER PRIMARY KEY, and runs keeps run_id for everyone else
    inputs       (id, service, category, input), one row per distinct input
    results      the rows: run (= runs.run_key), input_id (= inputs.id), measured_at as
                 microseconds since the epoch (UTC, an integer), the rest as measurements
    measurements a VIEW with the models' columns, names and value formats (measured_at as
                 the text SQLAlchemy writes, run_id as hex), which researchers query as before

``sqlite_metadata`` derives the tables from the models (as partitions.pg_metadata derives
PostgreSQL's): nothing is defined twice. ``VIEW_0006C`` is the view as revision 0006c and a
new database create it, fixed text (tests hold its columns equal to the models').

The view computes measured_at, so a condition on it reads every row: the store's own hot
reads (export's time range, retention's cutoffs, the budget, ``probe status``, the report)
go to ``results`` through ``logical``/``measured_between``, where measured_at is indexed.
PostgreSQL keeps the models' table (partitioned by month, revision 0005p).
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    ForeignKey,
    FromClause,
    Index,
    Integer,
    MetaData,
    Table,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import TypeDecorator

from probe.store.models import IdType, Measurement, metadata

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
INPUT_COLUMNS: tuple[str, ...] = ("service", "category", "input")
RUN_KEY = "run_key"  # runs.run_key on SQLite
# The rows results' uid index holds (a collector's; revision 0006c spells it the same): an
# upsert by uid names it as its conflict target's WHERE.
UID_ROWS = text("uid IS NOT NULL")
# measurements' columns that results replaces, by what it holds instead.
_REPLACED = {"run_id": "run", "service": "input_id", "category": None, "input": None}


class EpochMicroseconds(TypeDecorator[dt.datetime]):
    """A UTC instant kept as integer microseconds since the epoch; aware datetimes in Python."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> int | None:
        """Refuse naive times (as UTCDateTime does); exact integer arithmetic, no float."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps timezone-aware times")
        return (value - EPOCH) // _MICROSECOND

    def process_result_value(self, value: int | None, dialect: Dialect) -> dt.datetime | None:
        """An aware UTC datetime."""
        return None if value is None else EPOCH + dt.timedelta(microseconds=value)


_known_lock = threading.Lock()  # guards the per-engine caches below


def _copy(c: Column[Any], **changes: Any) -> Column[Any]:
    """A model's column without its table, its foreign keys or its index flags."""
    kwargs: dict[str, Any] = {"nullable": c.nullable, "primary_key": c.primary_key}
    if c.primary_key:
        kwargs["autoincrement"] = c.autoincrement
    return Column(changes.pop("name", c.name), changes.pop("type_", c.type), **kwargs)


@functools.cache
def sqlite_metadata() -> MetaData:
    """The tables as SQLite holds them from revision 0006c: the models, with measurements
    split into inputs and results, runs.run_key, and evidence pointing at results."""
    compact = MetaData()
    for table in metadata.sorted_tables:
        if table.name == "measurements":
            _inputs(Measurement, compact)
            _results(Measurement, compact)
        elif table.name == "evidence":
            key = table.c.measurement_id
            Table(
                "evidence", compact,
                Column(key.name, key.type, ForeignKey("results.id", ondelete="CASCADE"),
                       primary_key=True, autoincrement=False),
                *(_copy(c) for c in table.columns if c is not key),
            )  # fmt: skip
        elif table.name == "runs":
            runs = table.to_metadata(compact)
            runs.append_column(Column(RUN_KEY, Integer(), nullable=True))
            Index("ix_runs_run_key", runs.c[RUN_KEY], unique=True)
        else:
            table.to_metadata(compact)
    return compact


def _inputs(source: Table, metadata: MetaData) -> Table:
    columns = [_copy(source.c[n]) for n in INPUT_COLUMNS]
    table = Table("inputs", metadata, Column("id", IdType, primary_key=True), *columns)
    Index("ix_inputs_input", *(table.c[n] for n in INPUT_COLUMNS), unique=True)
    return table


def _results(source: Table, metadata: MetaData) -> Table:
    columns: list[Column[Any]] = []
    for c in source.columns:
        if c.name == "run_id":
            columns.append(Column("run", Integer(), ForeignKey(f"runs.{RUN_KEY}"), nullable=False))
        elif c.name == "service":
            columns.append(Column("input_id", Integer(), ForeignKey("inputs.id"), nullable=False))
        elif c.name in _REPLACED:
            continue
        elif c.name == "measured_at":
            columns.append(_copy(c, type_=EpochMicroseconds()))
        else:
            columns.append(_copy(c))
    checks = [
        CheckConstraint(c.sqltext, name=str(c.name).replace("measurements", "results"))
        for c in source.constraints
        if isinstance(c, CheckConstraint)
    ]
    table = Table("results", metadata, *columns, *checks)
    for index in source.indexes:
        names = list(dict.fromkeys(_REPLACED.get(c.name, c.name) or "input_id"
                                   for c in index.columns))  # fmt: skip
        suffix = str(index.name).removeprefix("ix_measurements_")
        if len(index.columns) == 1:
            suffix = names[0]
        kwargs = dict(index.dialect_kwargs)
        if names == ["uid"]:
            # NULL on a probe's every row: a partial index holds none of them (9 bytes a row).
            kwargs["sqlite_where"] = UID_ROWS
        Index(f"ix_results_{suffix}", *(table.c[n] for n in names), unique=index.unique,
              **kwargs)  # fmt: skip
    return table


def results() -> Table:
    """SQLite's results table."""
    return sqlite_metadata().tables["results"]


def inputs() -> Table:
    """SQLite's inputs table."""
    return sqlite_metadata().tables["inputs"]


def runs() -> Table:
    """SQLite's runs table (with run_key)."""
    return sqlite_metadata().tables["runs"]


# The view, as revision 0006c and a new database create it. Fixed text, never edited (a
# change is a new revision); tests/probe/test_compact.py holds its columns to the models'.
VIEW_0006C = """\
CREATE VIEW measurements AS
SELECT r.id AS id, k.run_id AS run_id, i.service AS service, i.category AS category,
       i.input AS input, r.verdict AS verdict, r.layer AS layer, r.detail AS detail,
       r.rule AS rule, r.reason AS reason,
       strftime('%Y-%m-%d %H:%M:%S', r.measured_at / 1000000, 'unixepoch')
         || printf('.%06d', r.measured_at % 1000000) AS measured_at,
       r.duration_ms AS duration_ms, r.throughput_kbps AS throughput_kbps,
       r.baseline_kbps AS baseline_kbps, r.throughput_bytes AS throughput_bytes,
       r.throughput_address AS throughput_address, r.uid AS uid
FROM results AS r JOIN inputs AS i ON i.id = r.input_id JOIN runs AS k ON k.run_key = r.run"""


def create_view(conn: Connection) -> None:
    """The measurements view (SQLite; before the researchers' views, which read it)."""
    conn.exec_driver_sql(VIEW_0006C)


_compact: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


DIALECT = "sqlite"  # the dialect whose head revision holds measurements compact


def is_compact(conn: Connection) -> bool:
    """Whether this database holds measurements in the compact shape: SQLite from revision
    0006c (every writer's, after its open upgraded it; a read-only open may read an older
    file as it is). Known per engine once true."""
    if conn.dialect.name != DIALECT:
        return False
    if _compact.get(conn.engine):
        return True
    found = conn.exec_driver_sql(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'results'"
    ).scalar_one()
    if found:
        with _known_lock:
            _compact[conn.engine] = True
    return bool(found)


@functools.cache
def _logical() -> FromClause:
    r, i, k = results(), inputs(), runs()
    columns = []
    for c in Measurement.columns:
        if c.name == "run_id":
            columns.append(k.c.run_id)
        elif c.name in INPUT_COLUMNS:
            columns.append(i.c[c.name])
        else:
            columns.append(r.c[c.name])
    joined = r.join(i, i.c.id == r.c.input_id).join(k, k.c[RUN_KEY] == r.c.run)
    # SQLite flattens this subquery into the query around it: conditions reach the indexes.
    return select(*columns).select_from(joined).subquery("measurements")


def logical(conn: Connection) -> FromClause:
    """measurements as a FROM with the models' columns, whose measured_at is indexed: the
    compact tables (measured_at typed EpochMicroseconds; SQLite flattens the subquery, so
    conditions reach their indexes), or the table itself."""
    if is_compact(conn):
        return _logical()
    return Measurement


def measured_between(
    in_results: bool, since: dt.datetime | None, until: dt.datetime | None
) -> list[ColumnElement[bool]]:
    """Conditions on Measurement (the view, where ``in_results``: is_compact) for
    since <= measured_at < until that read the index of measured_at: through results' ids
    in the compact shape."""
    if not in_results:
        at = Measurement.c.measured_at
        return [*([at >= since] if since is not None else []),
                *([at < until] if until is not None else [])]  # fmt: skip
    if since is None and until is None:
        return []
    r = results()
    ids = select(r.c.id)
    if since is not None:
        ids = ids.where(r.c.measured_at >= since)
    if until is not None:
        ids = ids.where(r.c.measured_at < until)
    return [Measurement.c.id.in_(ids)]


# --- Writing -------------------------------------------------------------------------------


class _Keys:
    """Committed ids of inputs and runs' keys, per engine: rows never change their id, so
    a known id is right for every later transaction (ids from one not yet committed are
    remembered only once it commits, and all are forgotten by a database error, for a commit
    that failed, or a deletion of runs: ``forget``)."""

    def __init__(self) -> None:
        self.inputs: dict[tuple[str, str, str], int] = {}
        self.runs: dict[str, int] = {}


_known: weakref.WeakKeyDictionary[Engine, _Keys] = weakref.WeakKeyDictionary()


def forget(engine: Engine) -> None:
    """Forget the ids known for this database (after runs were deleted: a run made again
    gets a new key)."""
    with _known_lock:
        _known.pop(engine, None)


def _keys(conn: Connection) -> _Keys:
    engine = conn.engine
    with _known_lock:
        keys = _known.get(engine)
        if keys is None:  # the first write on this engine, or the first after a forget()
            keys = _known[engine] = _Keys()
            if not event.contains(engine, "handle_error", _forget_on_error):
                event.listen(engine, "handle_error", _forget_on_error)
        return keys


def _forget_on_error(context: ExceptionContext) -> None:
    """Any database error on the engine: forget its ids. The commit event that remembers
    them comes before the commit itself, and a commit that then fails (a full disk) is rolled
    back without a rollback event: its ids would name rows that were never written."""
    connection = context.connection
    engine = connection.engine if connection is not None else context.engine
    if engine is not None:
        forget(engine)


def physical_rows(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Measurements rows (the models' columns) as results rows: each run's key and each
    input's id, made where missing (inside the caller's transaction)."""
    known = _keys(conn)
    made_inputs: dict[tuple[str, str, str], int] = {}
    made_runs: dict[str, int] = {}
    out = []
    for row in rows:
        what = (row["service"], row["category"], row["input"])
        input_id = known.inputs.get(what) or made_inputs.get(what)
        if input_id is None:
            input_id = made_inputs[what] = _input_id(conn, what)
        run = known.runs.get(row["run_id"]) or made_runs.get(row["run_id"])
        if run is None:
            run = made_runs[row["run_id"]] = _run_key(conn, row["run_id"])
        values = {k: v for k, v in row.items() if k not in _REPLACED}
        out.append({**values, "run": run, "input_id": input_id})
    if made_inputs or made_runs:
        _remember_after_commit(conn, known, made_inputs, made_runs)
    return out


def _remember_after_commit(
    conn: Connection, known: _Keys, made_inputs: dict[Any, int], made_runs: dict[str, int]
) -> None:
    """Remember the ids made once the transaction commits (a rollback forgets them)."""
    live = [True]

    def forget(_conn: Connection) -> None:
        live[0] = False

    def remember(_conn: Connection) -> None:
        if live[0]:
            with _known_lock:
                known.inputs.update(made_inputs)
                known.runs.update(made_runs)

    event.listen(conn, "rollback", forget, once=True)
    event.listen(conn, "commit", remember, once=True)


def _input_id(conn: Connection, what: tuple[str, str, str]) -> int:
    table = inputs()
    match = [table.c[n] == v for n, v in zip(INPUT_COLUMNS, what, strict=True)]
    found = conn.scalar(select(table.c.id).where(*match))
    if found is None:
        values = dict(zip(INPUT_COLUMNS, what, strict=True))
        key = conn.execute(table.insert().values(values)).inserted_primary_key
        assert key is not None  # an insert of one row
        found = key[0]
    return int(found)


def _run_key(conn: Connection, run_id: str) -> int:
    """The run's key, given it now if it has none (the next after the highest)."""
    table = runs()
    key = table.c[RUN_KEY]
    found = conn.scalar(select(key).where(table.c.run_id == run_id))
    if found is None:
        following = select(func.coalesce(func.max(key), 0) + 1).scalar_subquery()
        statement = update(table).where(table.c.run_id == run_id).values({key: following})
        if conn.execute(statement).rowcount != 1:
            # What the table's foreign key said of a row of a run that does not exist.
            failure = sqlite3.IntegrityError(f"FOREIGN KEY constraint failed: no run {run_id}")
            raise IntegrityError(str(statement), {"run_id": run_id}, failure)
        found = conn.scalar(select(key).where(table.c.run_id == run_id))
    return int(found or 0)
