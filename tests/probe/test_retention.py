"""Retention on real SQLite files: old evidence goes, every verdict row stays, the file shrinks."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import uuid
from pathlib import Path

import pytest

from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
from probe.cli import main
from probe.config import ConfigError, load_settings
from probe.store import open_database
from probe.store.owner import SweepLock
from probe.store.retention import prune
from tests.mounts import tmpfs

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
OLD, RECENT = 300, 100  # measurements 100 days old, and 1 day old


def _verdict() -> Verdict:
    # 2 KB of evidence that does not repeat, as real observations do not.
    blob = os.urandom(1000).hex()
    return Verdict("accessible", None, "ok", "all.ok", "Every step succeeded.", {"blob": blob})


def _fill(path: Path) -> None:
    """Two runs: one 100 days old, one a day old, each with its measurements and evidence."""
    db = open_database(str(path))
    try:
        for age, count in ((100, OLD), (1, RECENT)):
            started = NOW - dt.timedelta(days=age)
            info = RunInfo(uuid.uuid4().hex, started, Vantage(), "0.1.0", {})
            db.begin_run(info)
            for i in range(count):
                at = started + dt.timedelta(seconds=i)
                db.record(
                    MeasurementRecord(
                        info.run_id, f"s{i}", "social", f"https://s{i}.test/", _verdict(), at, 1.0
                    )
                )
            db.finish_run(info.run_id, "completed", {}, finished_at=started)
    finally:
        db.close()


def _counts(path: Path) -> tuple[int, int, int]:
    with contextlib.closing(sqlite3.connect(path)) as raw:
        return (
            raw.execute("SELECT count(*) FROM measurements").fetchone()[0],
            raw.execute("SELECT count(*) FROM evidence").fetchone()[0],
            raw.execute("SELECT count(*) FROM runs").fetchone()[0],
        )


def _check_integrity(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def _size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_prune_keeps_verdicts_drops_old_evidence_and_shrinks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    _fill(path)
    with contextlib.closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental, from birth
    before = _size(path)
    dry = prune(str(path), dt.timedelta(days=90), dry_run=True, now=NOW)
    assert (dry.evidence_deleted, dry.measurements_kept, dry.runs_kept) == (OLD, OLD + RECENT, 2)
    assert _counts(path) == (OLD + RECENT, OLD + RECENT, 2)  # a dry run changes nothing
    seen: list[tuple[int, int]] = []
    result = prune(
        str(path), dt.timedelta(days=90), now=NOW, progress=lambda d, t: seen.append((d, t))
    )
    assert result.evidence_deleted == OLD and seen[-1] == (OLD, OLD)
    assert _counts(path) == (OLD + RECENT, RECENT, 2)  # every verdict row kept
    assert result.reclaimed == "incremental vacuum"
    assert result.bytes_before == before and result.bytes_after == _size(path)
    assert _size(path) < before * 0.5, (before, _size(path))  # 3/4 of the evidence went
    _check_integrity(path)
    with contextlib.closing(sqlite3.connect(path)) as raw:
        old = raw.execute("SELECT min(id) FROM measurements").fetchone()[0]
        assert raw.execute("PRAGMA freelist_count").fetchone() == (0,)
    reader = open_database(str(path), read_only=True)
    try:  # the pruned measurement still shows its verdict, without evidence
        detail = reader.get_measurement(old)
        assert detail is not None and detail.row.verdict == "accessible" and detail.evidence == {}
    finally:
        reader.close()
    again = prune(str(path), dt.timedelta(days=90), now=NOW)
    assert again.evidence_deleted == 0


def _as_before_incremental(path: Path) -> None:
    """A file as probes before auto_vacuum made it (auto_vacuum = NONE)."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute("PRAGMA auto_vacuum = NONE")
        raw.execute("VACUUM")
        assert raw.execute("PRAGMA auto_vacuum").fetchone() == (0,)


def test_an_older_file_is_vacuumed_once_when_no_sweep_runs(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    _fill(path)
    _as_before_incremental(path)
    before = _size(path)
    lock = SweepLock.acquire(path, "probe daemon")  # a sweep runs: no VACUUM under it
    try:
        busy = prune(str(path), dt.timedelta(days=90), now=NOW)
    finally:
        lock.release()
    assert busy.evidence_deleted == OLD and busy.reclaimed.startswith("not yet: a sweep is")
    assert _size(path) >= before * 0.9  # the pages are free inside the file, not given back
    _check_integrity(path)
    done = prune(str(path), dt.timedelta(days=90), now=NOW)
    assert done.reclaimed.startswith("vacuum")
    assert _size(path) < before * 0.5
    with contextlib.closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # converted for good
    _check_integrity(path)


def test_prune_on_an_open_store_as_the_daemon_would(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    _fill(path)
    db = open_database(str(path))
    try:
        result = prune(db, dt.timedelta(days=90), now=NOW, exclusive=True)
        assert result.evidence_deleted == OLD and result.measurements_kept == OLD + RECENT
        assert db.list_runs()  # still open and usable
    finally:
        db.close()


def test_the_prune_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.sqlite"
    _fill(path)
    assert main(["prune", "--older-than", "90d", "--db", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would delete the evidence of {OLD} measurements" in out
    assert _counts(path)[1] == OLD + RECENT
    # Relative to the real clock: the "old" run is 100 days before 2026-12-01.
    days = (dt.datetime.now(dt.UTC) - NOW).days
    assert main(["prune", "--older-than", f"{90 + days}d", "--db", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "prune" and result["evidence_deleted"] == OLD
    assert result["measurements_kept"] == OLD + RECENT
    assert result["bytes_after"] < result["bytes_before"]


@pytest.mark.parametrize(
    ("age", "message"),
    [("never", "never would prune nothing"), ("3m", "expected a duration"), ("-1d", "expected")],
)
def test_prune_refuses_a_bad_age(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], age: str, message: str
) -> None:
    path = tmp_path / "r.sqlite"
    assert main(["prune", f"--older-than={age}", "--db", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert not path.exists()


def test_prune_creates_no_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "none" / "r.sqlite"
    assert main(["prune", "--older-than", "90d", "--db", str(path)]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not path.parent.exists()


def test_a_prune_on_a_full_disk_fails_cleanly_and_works_once_there_is_room(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real full disk (a tmpfs): one message, the database whole; with room, it prunes."""
    with tmpfs(tmp_path / "small", "16m") as small:
        path = small / "r.sqlite"
        _fill(path)
        filler = small / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            with contextlib.suppress(OSError):
                while True:  # every block the file system has left
                    os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        days = (dt.datetime.now(dt.UTC) - NOW).days + 90
        code = main(["prune", "--older-than", f"{days}d", "--db", str(path)])
        err = capsys.readouterr().err
        if code != 0:  # the deletions found no room in the WAL
            assert code == 2 and len(err.splitlines()) == 1, err
            assert "the disk is full" in err or "database or disk is full" in err, err
            filler.unlink()  # (even opening to check needs room for the -shm)
            _check_integrity(path)
            assert _counts(path) == (OLD + RECENT, OLD + RECENT, 2)  # nothing half-done
            assert main(["prune", "--older-than", f"{days}d", "--db", str(path)]) == 0
        assert _counts(path) == (OLD + RECENT, RECENT, 2)
        _check_integrity(path)


@pytest.mark.parametrize(
    ("given", "canonical", "days"),
    [('"90d"', "90d", 90), ('"2w"', "2w", 14), ('"36h"', "36h", 1.5), ("30", "30d", 30),
     ('"never"', "never", None), ("0", "never", None)],
)  # fmt: skip
def test_the_retention_setting(
    tmp_path: Path, given: str, canonical: str, days: float | None
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[storage]\nretention = {given}\n")
    storage = load_settings({}, str(path), environ={}).storage
    assert storage.retention == canonical
    window = storage.retention_window
    assert (None if window is None else window / dt.timedelta(days=1)) == days


def test_a_bad_retention_setting_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[storage]\ndb = "x.sqlite"\nretention = "3 months"\n')
    with pytest.raises(ConfigError, match=r"c.toml:3: storage.retention: expected a duration"):
        load_settings({}, str(path), environ={})
    (tmp_path / "empty.toml").write_text("")
    default = load_settings({}, str(tmp_path / "empty.toml"), environ={}).storage
    assert default.retention_window == dt.timedelta(days=30)


def test_prune_without_an_age_applies_storage_retention(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.sqlite"
    _fill(path)
    days = (dt.datetime.now(dt.UTC) - NOW).days + 90
    config = tmp_path / "c.toml"
    # retention_accessible "never": as long as the rest (the rows' age is relative to NOW,
    # the window's to today, so the 7-day default would catch the recent ones some day).
    config.write_text(
        f'[storage]\ndb = "{path}"\nretention = "{days}d"\nretention_accessible = "never"\n'
    )
    assert main(["prune", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["evidence_deleted"] == OLD
    config.write_text(f'[storage]\ndb = "{path}"\nretention = "never"\n')
    assert main(["prune", "--config", str(config)]) == 0
    assert "nothing to prune" in capsys.readouterr().out
    assert _counts(path) == (OLD + RECENT, RECENT, 2)


def _fill_mixed(path: Path | str, age: dt.timedelta, now: dt.datetime) -> None:
    """One run (into a file or a URL) ``age`` before ``now``: ACCESSIBLE accessible rows,
    then BLOCKED blocked ones."""
    db = open_database(str(path))
    try:
        started = now - age
        info = RunInfo(uuid.uuid4().hex, started, Vantage(), "0.1.0", {})
        db.begin_run(info)
        for i in range(ACCESSIBLE + BLOCKED):
            verdict = _verdict() if i < ACCESSIBLE else Verdict(
                "blocked", "dns", "dns.nxdomain", "dns.nxdomain", "NXDOMAIN where DoH had an "
                "address.", {"blob": os.urandom(500).hex()},
            )  # fmt: skip
            at = started + dt.timedelta(seconds=i)
            db.record(MeasurementRecord(info.run_id, f"s{i}", "social", f"https://s{i}.test/",
                                        verdict, at, 1.0))  # fmt: skip
        db.finish_run(info.run_id, "completed", {}, finished_at=started)
    finally:
        db.close()


ACCESSIBLE, BLOCKED = 40, 10


def _evidence_by_verdict(path: Path) -> dict[str, tuple[int, int]]:
    """verdict -> (rows, rows still with evidence)."""
    with contextlib.closing(sqlite3.connect(path)) as raw:
        rows = raw.execute(
            "SELECT m.verdict, count(*), count(e.measurement_id) FROM measurements m "
            "LEFT JOIN evidence e ON e.measurement_id = m.id GROUP BY m.verdict"
        ).fetchall()
    return {verdict: (n, kept) for verdict, n, kept in rows}


def test_accessible_evidence_goes_sooner_than_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    _fill_mixed(path, dt.timedelta(days=10), NOW)
    kept = prune(str(path), dt.timedelta(days=30), accessible_older_than=dt.timedelta(days=7),
                 now=NOW)  # fmt: skip
    assert kept.evidence_deleted == ACCESSIBLE
    assert kept.accessible_cutoff == NOW - dt.timedelta(days=7)
    assert kept.cutoff == NOW - dt.timedelta(days=30)
    assert _evidence_by_verdict(path) == {
        "accessible": (ACCESSIBLE, 0),
        "blocked": (BLOCKED, BLOCKED),
    }
    with contextlib.closing(sqlite3.connect(path)) as raw:
        reasons = dict(raw.execute("SELECT verdict, group_concat(DISTINCT reason) "
                                   "FROM measurements GROUP BY verdict"))  # fmt: skip
    assert reasons["accessible"] == "(pruned)" and "NXDOMAIN" in reasons["blocked"]
    # The accessible window never outlives the rest's: 60 days for accessible, 5 for all.
    again = prune(str(path), dt.timedelta(days=5), accessible_older_than=dt.timedelta(days=60),
                  now=NOW)  # fmt: skip
    assert again.evidence_deleted == BLOCKED
    assert again.accessible_cutoff == again.cutoff
    _check_integrity(path)


def test_the_prune_command_and_the_daemon_setting_apply_the_accessible_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.sqlite"
    _fill_mixed(path, dt.timedelta(days=10), dt.datetime.now(dt.UTC))
    config = tmp_path / "c.toml"
    config.write_text(f'[storage]\ndb = "{path}"\nretention = "30d"\n')  # accessible: 7d
    assert main(["prune", "--config", str(config), "--dry-run", "--json",
                 "--accessible-older-than", "30d"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["evidence_deleted"] == 0
    assert main(["prune", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"deleted the evidence of {ACCESSIBLE} measurements" in out
    assert "accessible and measured before" in out
    assert _evidence_by_verdict(path)["blocked"] == (BLOCKED, BLOCKED)
    assert main(["prune", "--config", str(config), "--accessible-older-than", "never"]) == 2
    assert "--accessible-older-than: give an age" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("retention", "accessible", "days"),
    [('"30d"', None, 7), ('"30d"', '"3d"', 3), ('"5d"', '"7d"', 5), ('"30d"', '"never"', 30),
     ('"never"', '"7d"', None)],
)  # fmt: skip
def test_the_accessible_window_setting(
    tmp_path: Path, retention: str, accessible: str | None, days: int | None
) -> None:
    path = tmp_path / "c.toml"
    extra = "" if accessible is None else f"retention_accessible = {accessible}\n"
    path.write_text(f"[storage]\nretention = {retention}\n{extra}")
    window = load_settings({}, str(path), environ={}).storage.accessible_window
    assert window == (None if days is None else dt.timedelta(days=days))


def test_a_bad_accessible_window_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[storage]\nretention = "30d"\nretention_accessible = "a week"\n')
    with pytest.raises(ConfigError, match=r"c.toml:3: storage.retention_accessible: expected"):
        load_settings({}, str(path), environ={})


def test_accessible_evidence_goes_sooner_on_postgresql(postgres_url: str) -> None:
    from sqlalchemy import create_engine, text

    _fill_mixed(postgres_url, dt.timedelta(days=40), NOW)  # the month before NOW's
    _fill_mixed(postgres_url, dt.timedelta(days=10), NOW)
    result = prune(postgres_url, dt.timedelta(days=30), accessible_older_than=dt.timedelta(days=7),
                   now=NOW)  # fmt: skip
    assert result.evidence_deleted == 2 * ACCESSIBLE + BLOCKED
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            rows: dict[str, int] = dict(conn.execute(text(
                "SELECT m.verdict, count(e.measurement_id) FROM measurements m LEFT JOIN "
                "evidence e ON e.measurement_id = m.id GROUP BY m.verdict"
            )).all())  # fmt: skip
            total = conn.scalar(text("SELECT count(*) FROM measurements"))
    finally:
        engine.dispose()
    assert rows == {"accessible": 0, "blocked": BLOCKED} and total == 2 * (ACCESSIBLE + BLOCKED)
