"""Writing an upload: one transaction, idempotent by the measurement ids made on the probe.

Ids are keyed by (token, probe's id): the collector stores a run under
``sha256(token name, NUL, run_id)`` (32 hex digits) and a measurement under
``sha256(token name, NUL, "<run_id>:<id>")`` in ``measurements.uid`` (the probe's id is the
pair run_id and its own measurements.id: wire.py), so two probes that happen to send the
same ids (a copied database, a buggy or hostile probe) never collide or overwrite each
other, while one probe's retry finds its own rows and adds nothing. An operator finds a
probe's run by the same hash. The probe's ``id`` is not stored: the collector's rows have
ids of their own.

Measurements go in with ``INSERT ... ON CONFLICT (uid) DO NOTHING ... RETURNING`` (on
PostgreSQL ``(uid, measured_at)``, the unique key a table partitioned by month can hold: a
probe's row never changes its time, so a retry still conflicts): only the rows new to the
database get their evidence, so a retry, or two collectors handed the same
upload at once, store each measurement once. A run uploaded again takes the newer status,
end, counts and location (the probe's own row is the truth). The caller answers 2xx only
after ``store`` returned, that is after the commit. The months the batch needs have their
partitions before the transaction begins (probe/store/partitions.py: no query once known).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, delete, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from probe.collector import wire
from probe.collector.wire import Upload
from probe.store import compact, partitions
from probe.store.database import Database
from probe.store.errors import StoreError, reason
from probe.store.models import Evidence, Measurement, Run

# Test-only (tests/collector/test_collector.py): seconds the collector sleeps after the
# commit and before it answers, so a test can kill -9 it exactly there. Never set it in use.
PAUSE_AFTER_COMMIT_ENV = "PROBE_COLLECTOR_TEST_PAUSE_AFTER_COMMIT"

_RUN_UPDATED = (
    "finished_at", "status", "counts", "network_name", "asn", "country", "asn_source",
    "country_source", "location_note",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Stored:
    """What an upload added: measurements new to the database, and those it held already."""

    inserted: int
    duplicates: int


def stored_id(token_name: str, probe_id: str) -> str:
    """The id the collector keeps for a probe's run id or measurement key (wire.key)."""
    return hashlib.sha256(f"{token_name}\0{probe_id}".encode()).hexdigest()[:32]


def stored_uid(token_name: str, run_id: str, probe_id: int) -> str:
    """The ``measurements.uid`` the collector keeps for a probe's measurement."""
    return stored_id(token_name, wire.key(run_id, probe_id))


def _insert(conn: Connection, table: Table) -> Any:
    """INSERT with ON CONFLICT, in the dialect's spelling (SQLite for a trial collector)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def store(db: Database, token_name: str, upload: Upload) -> Stored:
    """Write the upload in one transaction; return once it is committed."""
    runs = [
        {**r, "run_id": stored_id(token_name, r["run_id"]), "uploaded_by": token_name}
        for r in upload.runs
    ]
    rows: list[dict[str, Any]] = []
    evidence: dict[str, Mapping[str, Any] | None] = {}
    for m in upload.measurements:
        uid = stored_uid(token_name, m["run_id"], m["id"])
        evidence[uid] = m["evidence"]
        row = {k: v for k, v in m.items() if k not in ("evidence", "id")}
        rows.append({**row, "uid": uid, "run_id": stored_id(token_name, m["run_id"])})
    try:
        partitions.ensure(db.engine, [r["measured_at"] for r in rows])
        with db.engine.begin() as conn:
            inserted = _write(conn, runs, rows, evidence)
    except SQLAlchemyError as exc:
        raise StoreError(f"storing an upload failed: {reason(exc)}") from exc
    pause = os.environ.get(PAUSE_AFTER_COMMIT_ENV)
    if pause:
        time.sleep(float(pause))
    return Stored(inserted, len(rows) - inserted)


def _write(
    conn: Connection,
    runs: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    evidence: Mapping[str, Mapping[str, Any] | None],
) -> int:
    """Inside the transaction: runs upserted, new measurements and their evidence inserted."""
    if runs:
        stmt = _insert(conn, Run)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id"], set_={c: stmt.excluded[c] for c in _RUN_UPDATED}
        )
        conn.execute(stmt, runs)
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        return _write_postgresql(conn, rows, evidence)
    return _write_portable(conn, rows, evidence)


def _write_portable(
    conn: Connection,
    rows: list[dict[str, Any]],
    evidence: Mapping[str, Mapping[str, Any] | None],
) -> int:
    """_write_postgresql's insert in SQLAlchemy's terms, right on either dialect (SQLite: a
    trial collector)."""
    table, where = Measurement, None
    if compact.is_compact(conn):  # SQLite's results (and inputs) behind the view
        table, rows = compact.results(), compact.physical_rows(conn, rows)
        where = compact.UID_ROWS  # its uid index is partial
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_nothing(
        index_elements=_conflict_key(conn), index_where=where
    ).returning(table.c.id, table.c.uid, table.c.measured_at)
    new = conn.execute(stmt, rows).all()
    timed = conn.dialect.name == "postgresql"  # there evidence carries measured_at
    proofs = [
        {"measurement_id": mid, "data": evidence[uid], **({"measured_at": at} if timed else {})}
        for mid, uid, at in new
        if evidence[uid] is not None
    ]
    if proofs:
        conn.execute(insert(partitions.evidence_table() if timed else Evidence), proofs)
    return len(new)


def _conflict_key(conn: Connection) -> list[str]:
    """The unique key a measurement's uid is idempotent by (partitions.py on PostgreSQL)."""
    return ["uid", "measured_at"] if conn.dialect.name == "postgresql" else ["uid"]


# The measurements' columns as jsonb_to_recordset reads them (the models' types).
_PG_COLUMNS = (
    "uid varchar, run_id varchar, service varchar, category varchar, input text, "
    "verdict varchar, layer varchar, detail varchar, rule varchar, reason text, "
    "measured_at timestamptz, duration_ms float8, throughput_kbps float8, "
    "baseline_kbps float8, throughput_bytes bigint, throughput_address varchar"
)
_PG_NAMES = ", ".join(c.split()[0] for c in _PG_COLUMNS.split(", "))
# One statement, one parameter, one round trip: the batch as a JSON array, the new rows'
# evidence inserted from the RETURNING of the measurements' insert. The executemany it
# replaces spent most of its time building and splitting a long VALUES list in the driver.
_PG_INSERT = text(
    f"WITH batch AS (SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
    f"AS x({_PG_COLUMNS}, evidence jsonb)), "
    f"new AS (INSERT INTO measurements ({_PG_NAMES}) SELECT {_PG_NAMES} FROM batch "
    "ON CONFLICT (uid, measured_at) DO NOTHING RETURNING id, uid, measured_at), "
    "proof AS (INSERT INTO evidence (measurement_id, measured_at, data) "
    "SELECT new.id, new.measured_at, batch.evidence "
    "FROM new JOIN batch ON batch.uid = new.uid WHERE batch.evidence IS NOT NULL) "
    "SELECT count(*) FROM new"
)


def _write_postgresql(
    conn: Connection,
    rows: list[dict[str, Any]],
    evidence: Mapping[str, Mapping[str, Any] | None],
) -> int:
    batch = [{**r, "evidence": evidence[r["uid"]]} for r in rows]
    payload = json.dumps(batch, default=_iso, separators=(",", ":"))
    return int(conn.execute(_PG_INSERT, {"rows": payload}).scalar_one())


def _iso(v: Any) -> str:
    if isinstance(v, dt.datetime):
        return v.isoformat()
    raise TypeError(f"{type(v).__name__} is not JSON")


def _rows_of_runs(conn: Connection, token_name: str) -> tuple[Table, ColumnElement[bool]]:
    """The table of the verdict rows, and which of them the token's runs hold."""
    if compact.is_compact(conn):
        keyed = compact.runs()
        keys = select(keyed.c[compact.RUN_KEY]).where(keyed.c.uploaded_by == token_name)
        return compact.results(), compact.results().c.run.in_(keys)
    table = Measurement
    return table, table.c.run_id.in_(select(Run.c.run_id).where(Run.c.uploaded_by == token_name))


def delete_mine(db: Database, token_name: str) -> int:
    """Delete every run the token uploaded, with its measurements and evidence; how many
    measurements went."""
    try:
        with db.engine.begin() as conn:
            rows, of_runs = _rows_of_runs(conn, token_name)
            ids = select(rows.c.id).where(of_runs)
            conn.execute(delete(Evidence).where(Evidence.c.measurement_id.in_(ids)))
            gone = conn.execute(delete(rows).where(of_runs))
            conn.execute(delete(Run).where(Run.c.uploaded_by == token_name))
        compact.forget(db.engine)  # the runs' keys went with them
    except SQLAlchemyError as exc:
        raise StoreError(f"deleting the uploads of {token_name!r} failed: {reason(exc)}") from exc
    return int(gone.rowcount)
