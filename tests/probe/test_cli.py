"""The CLI's contract for bad input (exit 2, one clear message, nothing written) and listings."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
from probe.cli import main
from probe.store import open_database
from tests.mounts import remount_read_only, tmpfs


def test_bad_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--no-such-flag"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_unusable_database_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    targets = tmp_path / "t.toml"
    targets.write_text('[[service]]\nname = "x"\ncategory = "social"\nurls = ["https://x.test/"]\n')
    code = main(
        ["run", "--targets", str(targets), "--db", str(blocker / "r.sqlite"), "--no-progress"]
    )
    assert code == 2
    assert str(blocker / "r.sqlite") in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "t.toml"]


def test_bad_ca_bundle_content_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")
    db = tmp_path / "r.sqlite"
    assert main(["run", "--ca-bundle", str(bundle), "--db", str(db), "--no-progress"]) == 2
    assert "network.ca_bundle" in capsys.readouterr().err and not db.exists()


def test_category_without_a_csv_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets", "list", "--category", "GRP"]) == 2
    assert "--category" in capsys.readouterr().err


def test_targets_check_reports_every_error_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        '[[service]]\nname = "a"\ncategory = "social"\nurls = ["https://a.test/"]\n'
        '[[service]]\nname = "b"\ncategory = "chat"\nendpoints = ["b.test:99999"]\n'
    )
    assert main(["targets", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:7" in err and "category" in err
    assert f"{path}:8" in err and "99999" in err


def test_targets_list_of_the_bundled_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["version"] == 1 and data["kind"] == "targets"
    names = {s["name"] for s in data["services"]}
    assert {"telegram", "whatsapp", "signal", "facebook"} <= names and data["references"]


def test_config_show_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "c.toml"
    empty.write_text("")
    assert main(["config", "show", "--json", "--config", str(empty), "--retries", "3"]) == 0
    data = json.loads(capsys.readouterr().out)["settings"]
    assert data["limits.retries"] == {"value": 3, "source": "flag"}
    assert data["limits.per_host"]["source"] == "default"


def test_show_of_a_missing_run_is_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "r.sqlite")
    open_database(db).close()  # a sweep makes it; reading never does
    assert main(["list", "--db", db]) == 0
    assert "no runs yet" in capsys.readouterr().out
    assert main(["show", "abcdef12", "--db", db]) == 2
    assert main(["export", "--db", db, "--since", "yesterday"]) == 2
    assert "--since" in capsys.readouterr().err
    assert main(["export", "--db", db, "--since", "2026-02-01", "--until", "2026-01-01"]) == 2
    assert "--until" in capsys.readouterr().err
    assert main(["export", "--db", db, "--outages", "--until", "2026-01-01"]) == 2
    assert "--until" in capsys.readouterr().err


def test_stored_settings_keep_file_names_not_home_paths(tmp_path: Path, ca_bundle: str) -> None:
    home = tmp_path / "home" / "alice-realname"
    home.mkdir(parents=True)
    bundle = home / "ca.pem"
    bundle.write_bytes(Path(ca_bundle).read_bytes())
    token = home / "helper.token"
    token.write_text("s3cret\n")
    config = home / "probe.toml"
    config.write_text(f'[control]\nhelper_token_file = "{token}"\n')
    targets = home / "t.toml"
    targets.write_text(
        '[[service]]\nname = "x"\ncategory = "social"\nendpoints = ["127.0.0.1:9"]\n'
    )
    db = home / "r.sqlite"
    # The only reference is a loopback address, which is never contacted: the sweep finds the
    # vantage offline and measures nothing, but it stores its run and settings all the same.
    code = main(
        ["run", "--config", str(config), "--ca-bundle", str(bundle), "--targets", str(targets),
         "--db", str(db), "--reference", "http://127.0.0.1:9/", "--doh", "https://127.0.0.1:9/",
         "--resolver", "127.0.0.1:9", "--retry-delay", "0", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (stored,) = conn.execute("SELECT settings FROM runs").fetchone()
    assert "alice-realname" not in stored and str(tmp_path) not in stored
    settings = json.loads(stored)
    assert settings["network.ca_bundle"] == "ca.pem"
    assert settings["control.helper_token_file"] == "helper.token"


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "command", [["list"], ["show", "abcdef12"], ["export"], ["list", "--json"]]
)
@pytest.mark.parametrize("where", ["typo.sqlite", "nonexistent/deeper/typo.sqlite"])
def test_read_commands_refuse_a_missing_database_and_create_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], where: str
) -> None:
    db = tmp_path / where
    assert main([*command, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err == f"probe: no database at {db} (a sweep creates it: probe run)\n"
    assert _files(tmp_path) == []


def _database_with_a_run(path: Path) -> str:
    """A database holding one completed run with one measurement; returns the run id."""
    run_id = uuid.uuid4().hex
    db = open_database(str(path))
    try:
        db.begin_run(RunInfo(run_id, dt.datetime.now(dt.UTC), Vantage(name="v"), "0.1.0", {}))
        verdict = Verdict("accessible", None, "ok", "all.ok", "Every step succeeded.")
        db.record(
            MeasurementRecord(
                run_id, "telegram", "messaging", "https://t.test/", verdict,
                dt.datetime.now(dt.UTC), 1.0,
            )
        )  # fmt: skip
        db.finish_run(run_id, "completed", {"accessible": 1})
    finally:
        db.close()
    return run_id


def _read_everything(db: Path, run_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """list, show (a run and a measurement) and export all answer from ``db``."""
    capsys.readouterr()
    assert main(["list", "--json", "--db", str(db)]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [(r["run_id"], r["status"]) for r in runs] == [(run_id, "completed")]
    assert main(["show", run_id[:8], "--db", str(db)]) == 0
    assert "https://t.test/" in capsys.readouterr().out
    assert main(["show", "1", "--json", "--db", str(db)]) == 0
    assert json.loads(capsys.readouterr().out)["row"]["input"] == "https://t.test/"
    assert main(["export", "--db", str(db)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["run_id"] for r in rows] == [run_id]


def test_read_commands_create_no_side_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "r.sqlite"
    run_id = _database_with_a_run(db)
    before = _files(tmp_path)
    _read_everything(db, run_id, capsys)
    assert _files(tmp_path) == before  # no -wal, -shm or -journal left by a reader


def test_read_commands_on_a_read_only_mount(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with tmpfs(tmp_path / "media", "4m") as media:
        db = media / "r.sqlite"
        run_id = _database_with_a_run(db)
        remount_read_only(media)
        with pytest.raises(OSError):
            (media / "probe-write-test").touch()  # the mount really refuses writes
        _read_everything(db, run_id, capsys)
        assert main(["list", "--db", str(media / "typo.sqlite")]) == 2


def test_read_commands_on_a_read_only_mount_with_a_wal_left_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A writer killed -9 leaves its commits in the -wal: a reader on read-only media sees them."""
    with tmpfs(tmp_path / "media", "4m") as media:
        db = media / "r.sqlite"
        run_id = _database_with_a_run(db)
        # A writer that never closes: its process dies with the -wal and -shm in place.
        code = (
            "import os, sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1])\n"
            "c.execute('PRAGMA wal_autocheckpoint = 0')\n"
            "c.execute(\"UPDATE runs SET probe_version = 'from-the-wal'\")\n"
            "c.commit()\n"
            "os._exit(0)\n"
        )
        subprocess.run([sys.executable, "-c", code, str(db)], check=True)
        assert Path(f"{db}-wal").stat().st_size > 0
        remount_read_only(media)
        capsys.readouterr()
        assert main(["list", "--json", "--db", str(db)]) == 0
        runs = json.loads(capsys.readouterr().out)["runs"]
        assert [r["probe_version"] for r in runs] == ["from-the-wal"]
        _read_everything(db, run_id, capsys)
