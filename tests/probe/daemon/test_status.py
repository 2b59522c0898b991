"""``probe status`` on real SQLite files: no daemon, a dead one, a live one; bad usage."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from probe.cli import main
from probe.store.daemon_state import GroupRow, close_outages, open_outage, save_groups
from probe.store.database import open_database

T0 = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)


def _status(db: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["status", "--db", str(db), "--json"]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def test_status_of_no_daemon_then_a_dead_one_then_a_live_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.sqlite"
    open_database(str(path)).close()
    out = _status(path, capsys)
    assert out["daemon"] == {"running": False, "pid": None, "last_pid": None, "started_at": None}
    assert out["groups"] == [] and out["outages"] == [] and out["database_bytes"] > 0  # type: ignore[operator]
    db = open_database(str(path))
    row = GroupRow("messaging", _dead_pid(), T0, 1800.0, T0, T0, "a" * 32, "completed", T0)
    save_groups(db, [row])
    assert open_outage(db, "home", T0, "sweep", "abc")
    assert not open_outage(db, "home", T0, "sweep", "abc")  # one open outage at a time
    db.close()
    out = _status(path, capsys)
    assert out["daemon"]["running"] is False and out["daemon"]["last_pid"] == row.pid  # type: ignore[index]
    assert out["outages"][0]["open"] is True  # type: ignore[index]
    db = open_database(str(path))
    save_groups(db, [GroupRow("rest", os.getpid(), T0, 3600.0, None, None, None, None, T0)])
    assert close_outages(db, "home", T0 + dt.timedelta(hours=1)) == 1
    db.close()
    out = _status(path, capsys)
    assert out["daemon"]["running"] is True and out["daemon"]["pid"] == os.getpid()  # type: ignore[index]
    assert [g["name"] for g in out["groups"]] == ["rest"]  # type: ignore[attr-defined]
    assert out["outages"][0]["ended_at"] == "2026-01-05T13:00:00.000Z"  # type: ignore[index]
    assert main(["status", "--db", str(path)]) == 0
    human = capsys.readouterr().out
    assert f"daemon: running, pid {os.getpid()}" in human and "outage began" in human


def test_status_of_a_missing_database_is_bad_usage_and_creates_nothing(tmp_path: Path) -> None:
    assert main(["status", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_bad_daemon_config_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "p.toml"
    config.write_text('[[daemon.group]]\nname = "x"\nevery = "often"\n')
    db = tmp_path / "r.sqlite"
    assert main(["daemon", "--config", str(config), "--db", str(db)]) == 2
    assert f"{config}:3: daemon.group[1].every" in capsys.readouterr().err
    assert not db.exists()
