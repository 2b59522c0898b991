"""How a sweep's measurements and their evidence are written: SQLAlchemy Core, not the ORM.

A sweep writes one measurement row and one evidence row per input, thousands a sweep, and
reads nothing back. The ORM's unit of work (an object per row, its identity map, a flush to
learn the id) cost about as much CPU per input as the row's compressed evidence; a Core
insert of plain values writes the same rows without it. On SQLite the rows go to the
compact tables behind the measurements view (compact.py); elsewhere to measurements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Insert, insert

from probe.classify.verdict import MeasurementRecord
from probe.store import compact, partitions
from probe.store.models import Evidence, Measurement
from probe.store.rows import evidence_data, measurement_values

# Built once: the compiled form of a constant statement is cached by SQLAlchemy.
_MEASUREMENT: Insert = insert(Measurement)
_RESULT: Insert = insert(compact.results())
_EVIDENCE: Insert = insert(Evidence)


def insert_rows(connection: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert measurements rows (the models' columns; an id may be given) where this
    dialect keeps them, in the caller's transaction; their ids, in the order given."""
    if compact.is_compact(connection):
        statement, values = _RESULT, compact.physical_rows(connection, rows)
    else:
        statement, values = _MEASUREMENT, [dict(r) for r in rows]
    if values and all(row.get("id") is not None for row in values):
        connection.execute(statement, values)  # executemany: the ids are known
        return [int(row["id"]) for row in values]
    ids: list[int] = []
    for row in values:
        # One row at a time: its id is what the evidence row points to.
        key = connection.execute(statement, row).inserted_primary_key
        assert key is not None  # an insert of one row
        ids.append(int(key[0]))
    return ids


def insert_records(connection: Connection, recs: Sequence[MeasurementRecord]) -> list[int]:
    """Insert each record's measurement and evidence rows (in the caller's transaction);
    the measurements' ids, in the order given."""
    ids = insert_rows(connection, [measurement_values(r) for r in recs])
    rows = [{"measurement_id": i, "data": evidence_data(r)} for i, r in zip(ids, recs, strict=True)]
    if connection.dialect.name == "postgresql":
        # Evidence is partitioned by month there, so it holds its measurement's time too.
        for row, rec in zip(rows, recs, strict=True):
            row["measured_at"] = rec.measured_at
        # Not built at import: PostgreSQL's shape loads its dialect (partitions.pg_metadata).
        connection.execute(insert(partitions.evidence_table()), rows)
    else:
        connection.execute(_EVIDENCE, rows)  # executemany
    return ids
