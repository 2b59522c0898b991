"""The read side of the store: runs with their counts, a run's measurements, a measurement's
evidence, and the rows an export streams.

Database's read methods call these (the CLI's list, show and export). They select only
columns that schema 1 already had, so a read-only open reads every revision this probe knows
as it is, without upgrading it (schema.py); a query that needs a newer column must first make
the older revisions unreadable there. Most read the Measurement table (on SQLite from
revision 0006c the measurements view); the export, which selects a time range over a year, reads
compact.logical (results, whose measured_at is indexed, where the file has it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sqlalchemy import Connection, Select, func, inspect, select

from probe.classify.verdict import Location
from probe.store import compact
from probe.store.errors import StoreError
from probe.store.models import Evidence, Measurement, Run
from probe.store.ooni import OONISource
from probe.store.rows import (
    LOCATION_COLUMNS,
    ExportRow,
    MeasurementDetail,
    MeasurementRow,
    RunSummary,
    location_of,
    run_summary,
)


class Database(Protocol):
    """What the queries read through: the store's connections (``database.Database``).

    A protocol rather than the class itself: the class's read methods call these, so the
    queries name only what they use and the two modules do not import each other.
    """

    @property
    def abandoned(self) -> bool:
        """Whether runs found "running" with no live writer were marked aborted."""
        ...

    def connect(self, action: str) -> AbstractContextManager[Connection]:
        """A connection whose database errors surface as StoreError."""
        ...


MIN_PREFIX = 6  # of a run id; shorter prefixes collide too easily to be meant
EXPORT_BATCH = 500
# Rows with their evidence (tens of KB each, decompressed): fewer per batch keeps memory flat.
EVIDENCE_BATCH = 50
_HEX = frozenset("0123456789abcdef")

# What a MeasurementRow holds, by name: the row is built from exactly these columns.
_ROW = tuple(Measurement.c[f.name] for f in dataclasses.fields(MeasurementRow))
_EXPORTED = (
    "run_id", "service", "category", "input", "verdict", "layer", "detail", "rule",
    "measured_at", "duration_ms", "throughput_kbps", "baseline_kbps",
)  # fmt: skip


# A run's columns but revision 0003l's, which _locations reads where the database has them,
# and 0004c's uploaded_by, which only the collector writes.
_RUN_COLUMNS = [c for c in Run.columns if c.key not in (*LOCATION_COLUMNS, "uploaded_by")]


def _locations(conn: Connection, ids: list[str]) -> dict[str, Location]:
    """Each run's location, where the database has revision 0003l's columns (else none)."""
    names = {c["name"] for c in inspect(conn).get_columns(Run.name)}
    if not ids or not set(LOCATION_COLUMNS) <= names:
        return {}
    columns = [Run.c.run_id, Run.c.asn, Run.c.country, *(Run.c[n] for n in LOCATION_COLUMNS)]
    rows = conn.execute(select(*columns).where(Run.c.run_id.in_(ids))).mappings()
    return {r["run_id"]: location_of(r) for r in rows}


def list_runs(db: Database, limit: int = 20) -> list[RunSummary]:
    """The most recent runs, newest first, with their measurement counts."""
    stmt = select(*_RUN_COLUMNS).order_by(Run.c.started_at.desc(), Run.c.run_id.desc()).limit(limit)
    with db.connect("list_runs") as conn:
        runs = conn.execute(stmt).mappings().all()
        return _summaries(db, conn, runs)


def get_run(db: Database, run_id_or_prefix: str) -> RunSummary | None:
    """The run with this id or unique id prefix (at least 6 hex digits); None if none."""
    prefix = run_id_or_prefix.strip().lower()
    if len(prefix) < MIN_PREFIX:
        raise StoreError(f"run id prefix {prefix!r} is shorter than {MIN_PREFIX} characters")
    if not set(prefix) <= _HEX:  # run ids are hex; this also keeps LIKE wildcards out
        return None
    stmt = (
        select(*_RUN_COLUMNS).where(Run.c.run_id.startswith(prefix)).order_by(Run.c.run_id).limit(2)
    )
    with db.connect("get_run") as conn:
        runs = conn.execute(stmt).mappings().all()
        if len(runs) > 1:
            raise StoreError(f"run id prefix {prefix!r} is ambiguous: give more characters")
        return _summaries(db, conn, runs)[0] if runs else None


def _summaries(
    db: Database, conn: Connection, runs: Sequence[Mapping[Any, Any]]
) -> list[RunSummary]:
    """Summaries of runs (their rows), with per-verdict counts from one grouped query."""
    ids = [r["run_id"] for r in runs]
    per_run: dict[str, dict[str, int]] = {i: {} for i in ids}
    if ids:
        stmt = (
            select(Measurement.c.run_id, Measurement.c.verdict, func.count())
            .where(Measurement.c.run_id.in_(ids))
            .group_by(Measurement.c.run_id, Measurement.c.verdict)
        )
        for run_id, verdict, n in conn.execute(stmt):
            per_run[run_id][verdict] = n
    located = _locations(conn, ids)
    summaries = [run_summary(r, per_run[r["run_id"]], located.get(r["run_id"])) for r in runs]
    if db.abandoned:
        # What the next writer will record; a reader may not write it.
        summaries = [
            dataclasses.replace(s, status="aborted") if s.status == "running" else s
            for s in summaries
        ]
    return summaries


def get_measurement(db: Database, measurement_id: int) -> MeasurementDetail | None:
    """One measurement with its evidence; None if there is no such id."""
    stmt = (
        select(*_ROW, Evidence.c.data)
        .outerjoin(Evidence, Evidence.c.measurement_id == Measurement.c.id)
        .where(Measurement.c.id == measurement_id)
    )
    with db.connect("get_measurement") as conn:
        found = conn.execute(stmt).one_or_none()
    if found is None:
        return None
    *row, evidence = found
    return MeasurementDetail(row=MeasurementRow(*row), evidence=evidence or {})


def measurements_of_run(db: Database, run_id: str) -> list[MeasurementRow]:
    """The measurements of one run (exact id), in the order they were measured."""
    stmt = (
        select(*_ROW)
        .where(Measurement.c.run_id == run_id)
        .order_by(Measurement.c.measured_at, Measurement.c.id)
    )
    with db.connect("measurements_of_run") as conn:
        return [MeasurementRow(*r) for r in conn.execute(stmt)]


def export_statement(
    since: dt.datetime | None = None,
    service: str | None = None,
    run_id: str | None = None,
    until: dt.datetime | None = None,
    conn: Connection | None = None,
) -> Select[tuple[object, ...]]:
    """Measurements joined with their run's vantage, by measured_at, at or after since and
    before until (a month: PostgreSQL reads only its partition; SQLite reads results, whose
    measured_at is indexed: compact.logical; None: the models' table); naive times are UTC."""
    m = (compact.logical(conn) if conn is not None else Measurement).c
    columns = (
        m.id.label("measurement_id"), *(m[n] for n in _EXPORTED),
        Run.c.vantage_name, Run.c.network_type, Run.c.asn, Run.c.country, m.reason,
    )  # fmt: skip
    stmt = select(*columns).join(Run, Run.c.run_id == m.run_id)
    if since is not None:
        stmt = stmt.where(m.measured_at >= _aware(since))
    if until is not None:
        stmt = stmt.where(m.measured_at < _aware(until))
    if service is not None:
        stmt = stmt.where(m.service == service)
    if run_id is not None:
        stmt = stmt.where(m.run_id == run_id)
    return stmt.order_by(m.measured_at, m.id)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def export_rows(
    db: Database,
    since: dt.datetime | None = None,
    service: str | None = None,
    run_id: str | None = None,
    until: dt.datetime | None = None,
) -> Iterator[ExportRow]:
    """Stream what export_statement selects, as ExportRows."""
    # Batches, not the whole table: an export may be far larger than memory.
    with db.connect("export") as conn:
        stmt = export_statement(since, service, run_id, until, conn)
        for r in conn.execute(stmt.execution_options(yield_per=EXPORT_BATCH)):
            yield ExportRow(**r._asdict())


def export_sources(
    db: Database,
    since: dt.datetime | None = None,
    service: str | None = None,
    run_id: str | None = None,
    until: dt.datetime | None = None,
) -> Iterator[OONISource]:
    """Stream export_statement's rows with their run's start and version and their evidence
    (None where retention deleted it): what an OONI-format export needs."""
    with db.connect("export") as conn:
        base = export_statement(since, service, run_id, until, conn)
        stmt = base.add_columns(
            Run.c.started_at.label("run_started_at"), Run.c.probe_version, Evidence.c.data
        ).outerjoin(Evidence, Evidence.c.measurement_id == compact.logical(conn).c.id)
        for r in conn.execute(stmt.execution_options(yield_per=EVIDENCE_BATCH)):
            *row, started, version, evidence = r
            yield OONISource(ExportRow(*row), started, version, evidence)
