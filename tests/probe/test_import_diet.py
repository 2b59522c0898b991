"""A probe on SQLite loads neither SQLAlchemy's ORM nor its PostgreSQL dialect.

Importing sqlalchemy.orm cost the daemon about 6 MB of memory and PostgreSQL's dialect 2 MB
more, against a memory goal of 80 MB (probe/store/models.py): the store is SQLAlchemy Core,
and what PostgreSQL needs is imported only where PostgreSQL runs. A fresh interpreter does
what ``probe run`` and ``probe daemon`` do to their database, then lists what it loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What a sweep and the daemon do to a new SQLite file, then what status and list read.
SCRIPT = textwrap.dedent(
    """
    import datetime as dt
    import json
    import sys
    import uuid

    import probe.cli.run
    import probe.daemon.runner
    import probe.engine.sweep
    from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
    from probe.store import budgets, daemon_state, open_database

    path = sys.argv[1]
    now = dt.datetime.now(dt.UTC)
    run_id = uuid.uuid4().hex
    db = open_database(path)
    db.begin_run(RunInfo(run_id, now, Vantage(name="home"), "0.1.0", {"resolver": "system"}))
    verdict = Verdict("blocked", "dns", "dns.bogon", "dns.bogon", "A private address.")
    rec = MeasurementRecord(run_id, "telegram", "messaging", "https://web.telegram.org/",
                            verdict, now, 12.5, observations=())
    measurement = db.record(rec)
    group = daemon_state.GroupRow("all", 1, now, 3600.0, now, now, run_id, "completed", now)
    daemon_state.save_groups(db, [group])
    daemon_state.save_groups(db, [group])  # the second time, an update
    daemon_state.record_sweep(db, daemon_state.SweepRow(run_id, "all", now, now, None, False))
    daemon_state.open_outage(db, "home", now, "sweep", None)
    daemon_state.close_outages(db, "home", now)
    db.finish_run(run_id, "completed", {"measured": 1})
    spent = budgets.bytes_since(db, now - dt.timedelta(days=1), "home")
    db.close()

    reader = open_database(path, read_only=True)
    runs = reader.list_runs()
    status = daemon_state.status(reader)
    detail = reader.get_measurement(measurement)
    rows = reader.measurements_of_run(run_id)
    reader.close()
    loaded = sorted(
        m for m in sys.modules
        if m.startswith(("sqlalchemy.orm", "sqlalchemy.dialects.postgresql"))
    )
    print(json.dumps({
        "loaded": loaded,
        "runs": [(r.run_id, r.status, dict(r.verdicts)) for r in runs],
        "groups": [g.name for g in status.groups],
        "last_run": status.last_run.run_id if status.last_run else None,
        "verdicts": status.verdicts_since,
        "evidence": detail is not None and "observations" in detail.evidence,
        "rows": [r.verdict for r in rows],
        "spent": spent,
    }))
    """
)


def test_a_sqlite_probe_loads_no_orm_and_no_postgresql_dialect(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "results.db")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    # The store did its work, so the list below covers every path it took.
    assert got["runs"] == [[got["last_run"], "completed", {"blocked": 1}]]
    assert got["groups"] == ["all"]
    assert got["verdicts"] == {"blocked": 1}
    assert got["evidence"] is True
    assert got["rows"] == ["blocked"]
    assert got["spent"] == 0
    assert got["loaded"] == []
