"""contrib/datasette/metadata.json against a real database: every table, view and column it
describes exists in a new one, and each canned query runs on a filled SQLite file through
sqlite3 (as Datasette runs it, named parameters and all), giving the known answers. Datasette
itself is not needed."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from probe.store import open_database
from tests.probe.results_data import fill

METADATA = Path(__file__).resolve().parent.parent / "contrib" / "datasette" / "metadata.json"
_PARAMETER = re.compile(r"(?<!:):(\w+)")

# Each canned query's parameters, and what it must answer on tests/probe/results_data.py.
CASES: dict[str, tuple[dict[str, str], list[tuple[Any, ...]]]] = {
    "blocked_in_country_since": (
        {"country": "kz", "since": "2026-11-29"},
        [
            ("cdn", "throttled", "throttle.sni", "tls", 1, "2026-11-29T18:02:05.456000Z",
             "2026-11-29T18:02:05.456000Z", 1),
            ("telegram", "blocked", "dns.bogon", "dns", 1, "2026-11-29T18:02:03.456000Z",
             "2026-11-29T18:02:03.456000Z", 1),
        ],
    ),
    "throttling_by_hour_of_day": (
        {"country": "KZ"},
        [(18, 3, 1, 1, 0.667), (19, 3, 0, 0, 0.0)],
    ),
    "outages": (
        {},
        [("mobile", "2026-11-29T19:02:33.456000Z", "2026-11-29T19:03:33.456000Z", 1.0, 0,
          "sweep", None)],
    ),
    "currently_blocked": (
        {},
        [("telegram", "mobile", None, None, "blocked", "dns.bogon",
          "The resolver answered a private address; DoH gave a public one.",
          "2026-11-29T20:02:04.456000Z", 3, 3)],
    ),
    "throughput_of_an_input": (
        {"input": "https://cdn.example.test/big.bin"},
        [("2026-11-29T18:02:05.456000Z", "home-almaty", 12.0, 9000.0, 0.0013, "throttled",
          "throttle.sni"),
         ("2026-11-29T19:02:05.456000Z", "home-almaty", 8000.0, 9000.0, 0.8889, "accessible",
          "ok")],
    ),
}  # fmt: skip


def metadata() -> dict[str, Any]:
    """The database's part of the metadata (Datasette names a file's database by its stem)."""
    loaded = json.loads(METADATA.read_text(encoding="utf-8"))
    assert loaded["title"] and set(loaded["databases"]) == {"results"}
    database: dict[str, Any] = loaded["databases"]["results"]
    return database


def test_every_table_view_and_column_it_describes_exists(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    open_database(str(path)).close()
    with contextlib.closing(sqlite3.connect(path)) as raw:
        found = raw.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        names = {n for (n,) in found}
        described = metadata()["tables"]
        # Every table and view is described, and nothing that does not exist.
        assert set(described) == names
        for name, table in described.items():
            assert table["title"] and table["description"], name
            columns = [r[1] for r in raw.execute(f"PRAGMA table_info({name})")]
            assert list(table["columns"]) == columns, name
            assert all(table["columns"].values()), name


def test_there_are_canned_queries_each_titled_and_described() -> None:
    queries = metadata()["queries"]
    assert len(queries) >= 3 and set(queries) == set(CASES)
    for name, query in queries.items():
        assert query["title"] and query["description"] and query["sql"], name


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_canned_query_runs_on_a_real_database(name: str, tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    fill(str(path))
    sql = metadata()["queries"][name]["sql"]
    parameters, expected = CASES[name]
    assert set(_PARAMETER.findall(sql)) == set(parameters)
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as raw:
        assert raw.execute(sql, parameters).fetchall() == expected
