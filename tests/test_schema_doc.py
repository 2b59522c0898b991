"""docs/schema.md against the code: every table and column of the models (type, NULL), every
view and its columns, every field of every stored observation and control, and each example
as the code makes it now. A column added to the models without its line here fails."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table
from sqlalchemy.dialects import postgresql, sqlite

import measurements.observations as observations
from probe.classify.control_status import ControlStatus
from probe.classify.evidence import Controls, HelperReport, PastRate, ReferenceTLS
from probe.store import open_database
from probe.store.compact import sqlite_metadata
from probe.store.models import metadata
from probe.store.schema import _ALEMBIC_VERSION
from probe.store.views import COLUMNS
from tests.schema_examples import MARKER, examples

DOC = Path(__file__).resolve().parent.parent / "docs" / "schema.md"
_SECTION = re.compile(r"^### (Table|View|Object) `(\w+)`$", re.M)
_HEADING = re.compile(r"^#{1,3} ", re.M)
_ROW = re.compile(r"^\| `(\w+)` \| (.*) \|$")
# Stored as plain dicts without a type tag (control_status.as_json).
_UNTAGGED = (ControlStatus,)


def sections(text: str) -> dict[tuple[str, str], list[list[str]]]:
    """(kind, name) -> the rows of its table: [name, cell, cell, ...]."""
    found: dict[tuple[str, str], list[list[str]]] = {}
    for head in _SECTION.finditer(text):
        key = (head[1], head[2])
        assert key not in found, f"docs/schema.md documents {key} twice"
        after = _HEADING.search(text, head.end())
        body = text[head.end() : after.start() if after else len(text)]
        rows = [_ROW.match(line) for line in body.splitlines()]
        found[key] = [[m[1], *m[2].split(" | ")] for m in rows if m]
    return found


def table_problems(text: str, metadata: MetaData, sqlite_only: MetaData | None = None) -> list[str]:
    """Where the doc's tables and the metadata's differ (names, order, types, NULL); the
    tables and columns that only SQLite's compact shape has (compact.py) are documented
    with PostgreSQL "—"."""
    doc = {name: rows for (kind, name), rows in sections(text).items() if kind == "Table"}
    compact = sqlite_metadata() if sqlite_only is None else sqlite_only
    tables = {**metadata.tables, _ALEMBIC_VERSION.name: _ALEMBIC_VERSION}
    extra = {n: t for n, t in compact.tables.items() if n not in tables}
    problems = [f"table {t} is not documented" for t in sorted({*tables, *extra} - set(doc))]
    problems += [
        f"table {t} is documented but does not exist" for t in set(doc) - {*tables, *extra}
    ]
    for name in sorted(set(doc) & {*tables, *extra}):
        rows = {r[0]: r for r in doc[name]}
        shared = list(tables[name].columns) if name in tables else []
        known = {c.name for c in shared}
        own = [c for c in compact.tables[name].columns if c.name not in known] if (
            name in compact.tables) else []  # fmt: skip
        columns = [*shared, *own]
        for c in columns:
            if c.name not in rows:
                problems.append(f"column {name}.{c.name} is not documented")
                continue
            want = [c.type.compile(dialect=sqlite.dialect())]
            want.append(c.type.compile(dialect=postgresql.dialect()) if c in shared else "—")
            want.append("yes" if c.nullable else "no")
            if rows[c.name][1:4] != want:
                problems.append(f"{name}.{c.name}: documented {rows[c.name][1:4]}, is {want}")
        problems += [
            f"column {name}.{r} is documented but does not exist"
            for r in rows
            if r not in {c.name for c in columns}
        ]
        if set(rows) == {c.name for c in columns} and list(rows) != [c.name for c in columns]:
            problems.append(f"table {name}: columns documented out of order")
    return problems


def test_every_table_and_column_is_documented_as_it_is() -> None:
    assert table_problems(DOC.read_text(encoding="utf-8"), metadata) == []


def test_a_column_added_without_a_line_fails() -> None:
    changed = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(changed)
    Table("runs", changed, Column("added_later", Integer()), extend_existing=True)
    Table("later_table", changed, Column("id", Integer(), primary_key=True))
    assert table_problems(DOC.read_text(encoding="utf-8"), changed) == [
        "table later_table is not documented",
        "column runs.added_later is not documented",
    ]


def test_every_view_and_its_columns_are_documented(tmp_path: Path) -> None:
    doc = {n: [r[0] for r in rows] for (k, n), rows in sections(DOC.read_text()).items()
           if k == "View"}  # fmt: skip
    assert doc == {name: list(columns) for name, columns in COLUMNS.items()}
    path = tmp_path / "results.sqlite"
    open_database(str(path)).close()
    with contextlib.closing(sqlite3.connect(path)) as raw:
        for name in doc:
            assert [r[1] for r in raw.execute(f"PRAGMA table_info({name})")] == doc[name]


def stored_kinds() -> list[type[Any]]:
    """Every dataclass that the evidence JSON holds."""
    found = [
        c for _, c in inspect.getmembers(observations, inspect.isclass)
        if dataclasses.is_dataclass(c) and c.__module__ == observations.__name__
    ]  # fmt: skip
    return [*found, Controls, HelperReport, PastRate, ReferenceTLS, ControlStatus]


@pytest.mark.parametrize("kind", stored_kinds(), ids=lambda k: k.__name__)
def test_every_field_of_every_stored_kind_is_documented(kind: type[Any]) -> None:
    doc = sections(DOC.read_text(encoding="utf-8"))
    assert ("Object", kind.__name__) in doc, f"{kind.__name__} is not documented"
    fields = [f.name for f in dataclasses.fields(kind) if f.metadata.get("stored", True)]
    if kind not in _UNTAGGED:
        fields.append("kind")  # to_jsonable's
    assert [r[0] for r in doc["Object", kind.__name__]] == fields


def test_the_examples_are_what_the_code_makes() -> None:
    found = {m[1]: json.loads(m[2]) for m in MARKER.finditer(DOC.read_text(encoding="utf-8"))}
    made = json.loads(json.dumps(examples()))
    assert set(found) == set(made)
    for name, value in made.items():
        assert found[name] == value, (
            f"example {name} is stale: PYTHONPATH=. python -m tests.schema_examples docs/schema.md"
        )
