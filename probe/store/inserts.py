"""How a sweep's measurements and their evidence are written: SQLAlchemy Core, not the ORM.

A sweep writes one measurement row and one evidence row per input, thousands a sweep, and
reads nothing back. The ORM's unit of work (an object per row, its identity map, a flush to
learn the id) cost about as much CPU per input as the row's compressed evidence; a Core
insert of plain values writes the same rows without it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Insert, insert

from probe.classify.verdict import MeasurementRecord
from probe.store import partitions
from probe.store.models import Evidence, Measurement
from probe.store.rows import evidence_data, measurement_values

# Built once: the compiled form of a constant statement is cached by SQLAlchemy.
_MEASUREMENT: Insert = insert(Measurement.__table__)  # type: ignore[arg-type]
_EVIDENCE: Insert = insert(Evidence.__table__)  # type: ignore[arg-type]
_PG_EVIDENCE: Insert = insert(partitions.metadata_for("postgresql").tables["evidence"])


def insert_records(connection: Connection, recs: Sequence[MeasurementRecord]) -> list[int]:
    """Insert each record's measurement and evidence rows (in the caller's transaction);
    the measurements' ids, in the order given."""
    ids: list[int] = []
    for rec in recs:
        # One row at a time: its id is what the evidence row points to.
        result = connection.execute(_MEASUREMENT, measurement_values(rec))
        key = result.inserted_primary_key
        assert key is not None  # an insert of one row
        ids.append(int(key[0]))
    rows = [{"measurement_id": i, "data": evidence_data(r)} for i, r in zip(ids, recs, strict=True)]
    if connection.dialect.name == "postgresql":
        # Evidence is partitioned by month there, so it holds its measurement's time too.
        for row, rec in zip(rows, recs, strict=True):
            row["measured_at"] = rec.measured_at
        connection.execute(_PG_EVIDENCE, rows)
    else:
        connection.execute(_EVIDENCE, rows)  # executemany
    return ids
