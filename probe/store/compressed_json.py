"""The JSON columns' types: evidence's, JSON that SQLite keeps zlib-compressed, PostgreSQL as
JSONB; and the runs' settings and counts, JSON (JSONB on PostgreSQL).

Evidence is most of a probe's file (a few KB an input, about 20 KB a throughput test,
against a few hundred bytes for its verdict row), and JSON of observations compresses about
6x at zlib level 6. On SQLite the value is stored as a BLOB of ``zlib(json)``; rows written
before hold TEXT JSON in the same column, and a read accepts both: SQLite types values, not
columns (the column's declared JSON gives it NUMERIC affinity, which leaves both a BLOB and
non-numeric text as they are), so no migration rewrites old rows and the DDL is unchanged.
Nothing may query into the evidence in SQL (json_extract cannot read a BLOB): what a query
reads is a column of measurements (see models.py).

On PostgreSQL the value stays JSONB, as a central database indexes into it; PostgreSQL
compresses large values itself (TOAST, above about 2 KB), so compressing here would only
hide the JSON from it. Other backends get plain JSON.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from sqlalchemy import JSON, Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

# zlib level 6 (its default): about 6x on evidence, tens of microseconds a row; level 9
# gains a few percent for twice the time.
LEVEL = 6


def pack(value: Any) -> bytes:
    """The bytes SQLite keeps for a JSON value: zlib of its compact JSON text."""
    text = json.dumps(value, separators=(",", ":"))
    return zlib.compress(text.encode("utf-8"), LEVEL)


def unpack(stored: bytes | str) -> Any:
    """A JSON value from what SQLite holds: a compressed BLOB, or the TEXT older rows hold."""
    if isinstance(stored, str):
        return json.loads(stored)
    return json.loads(zlib.decompress(stored).decode("utf-8"))


def _jsonb(dialect: Dialect) -> TypeEngine[Any]:
    """PostgreSQL's JSONB, imported only there: a probe on SQLite never loads that dialect
    (about 2 MB of memory and 30 ms of start-up)."""
    from sqlalchemy.dialects.postgresql import JSONB

    return dialect.type_descriptor(JSONB())


class JSONType(TypeDecorator[Any]):
    """JSON; JSONB on PostgreSQL, so a central database can index into it."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """The column as each backend keeps it."""
        if dialect.name == "postgresql":
            return _jsonb(dialect)
        return dialect.type_descriptor(JSON())


class _SQLiteStorage(TypeEngine[Any]):
    """What SQLite is handed: the bytes or text as they are, in a column declared JSON.

    Declared JSON, as the migrations create it, so the schema of a new file and an upgraded
    one stay the same (tests/probe/test_migrations.py compares them).
    """

    __visit_name__ = "JSON"


class CompressedJSON(TypeDecorator[Any]):
    """JSON compressed at rest on SQLite (a BLOB, TEXT from older rows read too); JSONB on
    PostgreSQL; JSON elsewhere."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """The column as each backend keeps it."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLiteStorage())
        if dialect.name == "postgresql":
            return _jsonb(dialect)
        return dialect.type_descriptor(JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """On SQLite, the compressed bytes; elsewhere the value, for JSON(B) to serialise."""
        if dialect.name != "sqlite" or value is None:
            return value
        return pack(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        """On SQLite, the value from a BLOB or from older TEXT; elsewhere as JSON(B) gave it."""
        if dialect.name != "sqlite" or value is None:
            return value
        return unpack(value)
