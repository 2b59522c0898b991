"""The SQL views a researcher reads: common questions answered without joins or JSON.

One definition per dialect, as fixed SQL text, that both revision 0004v (which creates them
in a migrated database) and schema.py (which creates a new database at the head without
Alembic) execute, so a migrated database and a new one hold the same views
(tests/probe/test_migrations.py compares them). No Alembic and no models here: a revision
must not depend on the models of a later day, and opening a database at the head must not
import Alembic.

The text of ``V0004V`` is what revision 0004v created, and is never edited: a change to a
view is a new revision with a new constant here (``HEAD_VIEWS`` then names it), which drops
the old view and creates the new one. Views are additive, so meta.schema_version stays.
``V0006C`` is revision 0006c's: on SQLite the same views read from the compact tables
(compact.py), PostgreSQL's unchanged.

Times: SQLite keeps naive UTC text ("2026-11-29 01:02:03.456000"); its views give ISO-8601
UTC text with a "Z" ("2026-11-29T01:02:03.456000Z"), which sorts in time order and which
pandas and Datasette read as UTC. PostgreSQL's give ``timestamptz``. Hours are UTC on both,
whatever the session's time zone.

SQLite and table rebuilds: a later revision that rebuilds ``runs`` or ``results`` on SQLite
(Alembic's batch mode: copy, drop, rename) must call ``drop_views`` before and
``create_views`` after, because SQLite refuses to rename a table while a view names a table
that no longer exists (tests/probe/test_views.py shows both). Since revision 0006c SQLite's
``measurements`` is itself a view (compact.py: ``VIEW_0006C``, over results, inputs and
runs) and these (``V0006C``) read those tables directly; a rebuild of results drops and
creates it too (``compact.create_view``, before these).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one dialect spells the few expressions that differ."""

    time: str  # a stored time column as the view gives it; {c} is the column
    hour: str  # the UTC hour it falls in
    hour_of_day: str  # 0-23, UTC


_SQLITE = Dialect(
    time="replace({c}, ' ', 'T') || 'Z'",
    hour="strftime('%Y-%m-%dT%H:00:00Z', {c})",
    hour_of_day="CAST(strftime('%H', {c}) AS INTEGER)",
)
_POSTGRESQL = Dialect(
    time="{c}",
    # date_trunc on a timestamptz works in the session's zone: truncate the UTC wall time.
    hour="(date_trunc('hour', {c} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')",
    hour_of_day="CAST(EXTRACT(HOUR FROM {c} AT TIME ZONE 'UTC') AS INTEGER)",
)

# Every input's row with its run's vantage: what each view reads (a CTE, not a view of its
# own, so the views stay the only names a reader sees besides the tables).
_WITH_VANTAGE = """\
with_vantage AS (
  SELECT m.id, m.run_id, m.service, m.category, m.input, m.verdict, m.layer, m.detail,
         m.rule, m.reason, m.measured_at, m.throughput_kbps, m.baseline_kbps,
         m.throughput_address, r.vantage_name, r.network_type, r.asn, r.country
  FROM measurements AS m JOIN runs AS r ON r.run_id = m.run_id
)"""

# Per service and vantage, its latest run's inputs give the service's verdict by the rule of
# probe/classify/service.py: blocked if any input is, else throttled, else accessible, else
# inconclusive; the detail is the most frequent among the inputs with that verdict (a tie:
# the one measured first), and layer, reason, input and measured_at are of the first input
# with that detail. PARTITION BY, not a join, so NULL vantage fields group together.
_LATEST = """\
CREATE VIEW latest_verdicts AS
WITH {with_vantage},
ranked AS (
  SELECT w.*,
         CASE w.verdict WHEN 'blocked' THEN 0 WHEN 'throttled' THEN 1
                        WHEN 'accessible' THEN 2 ELSE 3 END AS precedence,
         FIRST_VALUE(w.run_id) OVER (
           PARTITION BY w.service, w.vantage_name, w.asn, w.country
           ORDER BY w.measured_at DESC, w.id DESC) AS latest_run
  FROM with_vantage AS w
),
latest AS (
  SELECT k.*,
         MIN(k.precedence) OVER (PARTITION BY k.service, k.run_id) AS best,
         COUNT(*) OVER (PARTITION BY k.service, k.run_id) AS inputs
  FROM ranked AS k WHERE k.run_id = k.latest_run
),
agreeing AS (
  SELECT l.*,
         COUNT(*) OVER (PARTITION BY l.service, l.run_id) AS agreeing,
         COUNT(*) OVER (PARTITION BY l.service, l.run_id, l.detail) AS with_detail
  FROM latest AS l WHERE l.precedence = l.best
),
picked AS (
  SELECT a.*,
         ROW_NUMBER() OVER (
           PARTITION BY a.service, a.run_id
           ORDER BY a.with_detail DESC, a.measured_at, a.id) AS pick
  FROM agreeing AS a
)
SELECT p.service, p.vantage_name, p.asn, p.country, p.verdict, p.layer, p.detail, p.reason,
       {measured_at} AS measured_at, p.input, p.inputs, p.agreeing, p.run_id,
       p.id AS measurement_id
FROM picked AS p WHERE p.pick = 1"""

_HOURLY = """\
CREATE VIEW hourly_verdicts AS
WITH {with_vantage}
SELECT w.service, w.vantage_name, w.asn, w.country, {hour} AS hour,
       {hour_of_day} AS hour_of_day, w.verdict, COUNT(*) AS measurements
FROM with_vantage AS w
GROUP BY w.service, w.vantage_name, w.asn, w.country, {hour}, {hour_of_day}, w.verdict"""

_BLOCKED = """\
CREATE VIEW blocked_inputs AS
WITH {with_vantage}
SELECT w.id AS measurement_id, w.run_id, {measured_at} AS measured_at, w.service,
       w.category, w.input, w.verdict, w.layer, w.detail, w.rule, w.reason,
       w.throughput_kbps, w.baseline_kbps, w.vantage_name, w.network_type, w.asn, w.country
FROM with_vantage AS w
WHERE w.verdict IN ('blocked', 'throttled')"""

_THROUGHPUT = """\
CREATE VIEW throughput_history AS
WITH {with_vantage}
SELECT w.id AS measurement_id, w.run_id, {measured_at} AS measured_at, w.service, w.input,
       w.throughput_kbps, w.baseline_kbps,
       w.throughput_kbps / NULLIF(w.baseline_kbps, 0) AS ratio,
       w.verdict, w.detail, w.throughput_address, w.vantage_name, w.asn, w.country
FROM with_vantage AS w
WHERE w.throughput_kbps IS NOT NULL"""


# SQLite from revision 0006c: the same rows from the compact tables (compact.py) rather than
# the measurements view, so a view orders and partitions by the integer time and turns only
# the rows it gives into text (through the measurements view every row's time is text).
_SQLITE_COMPACT = Dialect(
    time="strftime('%Y-%m-%dT%H:%M:%S', {c} / 1000000, 'unixepoch') "
    "|| printf('.%06dZ', {c} % 1000000)",
    hour="strftime('%Y-%m-%dT%H:00:00Z', {c} / 1000000, 'unixepoch')",
    hour_of_day="CAST({c} / 3600000000 % 24 AS INTEGER)",
)
_WITH_VANTAGE_COMPACT = """\
with_vantage AS (
  SELECT m.id, r.run_id, i.service, i.category, i.input, m.verdict, m.layer, m.detail,
         m.rule, m.reason, m.measured_at, m.throughput_kbps, m.baseline_kbps,
         m.throughput_address, r.vantage_name, r.network_type, r.asn, r.country
  FROM results AS m JOIN inputs AS i ON i.id = m.input_id JOIN runs AS r ON r.run_key = m.run
)"""


def _render(template: str, d: Dialect, alias: str, with_vantage: str) -> str:
    column = f"{alias}.measured_at"
    return template.format(
        with_vantage=with_vantage,
        measured_at=d.time.format(c=column),
        hour=d.hour.format(c=column),
        hour_of_day=d.hour_of_day.format(c=column),
    )


def _views(d: Dialect, with_vantage: str = _WITH_VANTAGE) -> dict[str, str]:
    return {
        "latest_verdicts": _render(_LATEST, d, "p", with_vantage),
        "hourly_verdicts": _render(_HOURLY, d, "w", with_vantage),
        "blocked_inputs": _render(_BLOCKED, d, "w", with_vantage),
        "throughput_history": _render(_THROUGHPUT, d, "w", with_vantage),
    }


# Revision 0004v's views, per dialect: name -> CREATE VIEW statement. Never edited (above).
V0004V: Mapping[str, Mapping[str, str]] = {
    "sqlite": _views(_SQLITE),
    "postgresql": _views(_POSTGRESQL),
}
# Revision 0006c's: the same columns and values; on SQLite read from results and inputs.
V0006C: Mapping[str, Mapping[str, str]] = {
    "sqlite": _views(_SQLITE_COMPACT, _WITH_VANTAGE_COMPACT),
    "postgresql": V0004V["postgresql"],
}
HEAD_VIEWS = V0006C

# The columns of each view at the head, in order (docs/schema.md and the tests read these).
COLUMNS: Mapping[str, tuple[str, ...]] = {
    "latest_verdicts": (
        "service", "vantage_name", "asn", "country", "verdict", "layer", "detail", "reason",
        "measured_at", "input", "inputs", "agreeing", "run_id", "measurement_id",
    ),
    "hourly_verdicts": (
        "service", "vantage_name", "asn", "country", "hour", "hour_of_day", "verdict",
        "measurements",
    ),
    "blocked_inputs": (
        "measurement_id", "run_id", "measured_at", "service", "category", "input", "verdict",
        "layer", "detail", "rule", "reason", "throughput_kbps", "baseline_kbps",
        "vantage_name", "network_type", "asn", "country",
    ),
    "throughput_history": (
        "measurement_id", "run_id", "measured_at", "service", "input", "throughput_kbps",
        "baseline_kbps", "ratio", "verdict", "detail", "throughput_address", "vantage_name",
        "asn", "country",
    ),
}  # fmt: skip
NAMES: tuple[str, ...] = tuple(COLUMNS)


def statements(dialect: str, views: Mapping[str, Mapping[str, str]] = HEAD_VIEWS) -> list[str]:
    """The CREATE VIEW statements for a dialect (SQLite's for any other: plain SQL)."""
    return list(views.get(dialect, views["sqlite"]).values())


def create_views(conn: Connection, views: Mapping[str, Mapping[str, str]] = HEAD_VIEWS) -> None:
    """Create the views (on a connection inside the caller's transaction)."""
    for sql in statements(conn.dialect.name, views):
        conn.exec_driver_sql(sql)


def drop_views(conn: Connection, names: tuple[str, ...] = NAMES) -> None:
    """Drop the views that exist (before a SQLite table rebuild, or a downgrade)."""
    for name in reversed(names):
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
