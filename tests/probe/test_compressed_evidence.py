"""Evidence compressed at rest on real SQLite files, beside the TEXT rows older probes wrote;
and the verdict rows a prune shortens past the window."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
from probe.cli import main
from probe.store import open_database
from probe.store.compressed_json import CompressedJSON
from probe.store.retention import COMPACTED_KEY, PRUNED, prune

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
EVIDENCE = {
    "answers": [{"name": "ünïcode.test", "addresses": ["192.0.2.1"] * 40}],
    "nested": {"depth": [[1, 2.5, None, True], {"k": "v" * 300}]},
    "text": "A page that says \u201cblocked\u201d \u2014 and \U0001f600.",
}


def _record(db: Any, age_days: float, i: int, reason: str, **verdict: Any) -> None:
    started = NOW - dt.timedelta(days=age_days)
    info = RunInfo(uuid.uuid4().hex, started, Vantage(), "0.1.0", {})
    db.begin_run(info)
    v = Verdict(
        verdict.get("verdict", "blocked"), "tls", "tls.reset", "tls.sni_filter", reason,
        {"i": i, **EVIDENCE}, throughput_kbps=verdict.get("kbps"),
    )  # fmt: skip
    rec = MeasurementRecord(info.run_id, f"s{i}", "social", f"https://s{i}.test/", v, started, 9.5)
    db.record(rec)
    db.finish_run(info.run_id, "completed", {}, finished_at=started)


def _raw(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as raw:
        rows = raw.execute(sql, args).fetchall()
        raw.commit()
        return rows


def _shown(path: Path, mid: int, capsys: pytest.CaptureFixture[str]) -> Any:
    capsys.readouterr()
    assert main(["show", str(mid), "--db", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_new_rows_are_compressed_blobs_and_old_text_rows_still_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.sqlite"
    db = open_database(str(path))
    try:
        for i in range(4):
            _record(db, 1, i, "reset")
    finally:
        db.close()
    # Rows 3 and 4 as an older probe wrote them: the same column, TEXT JSON.
    for mid in (3, 4):
        text = json.dumps({"verdict_evidence": {"i": mid - 1, **EVIDENCE}, "observations": []})
        _raw(path, "UPDATE evidence SET data = ? WHERE measurement_id = ?", text, mid)
    kinds = _raw(path, "SELECT measurement_id, typeof(data), data FROM evidence ORDER BY 1")
    assert [k for _, k, _ in kinds] == ["blob", "blob", "text", "text"]
    blob, text = kinds[0][2], kinds[2][2]
    assert json.loads(zlib.decompress(blob))["verdict_evidence"]["i"] == 0  # plain zlib
    assert len(blob) * 3 < len(text)  # repetitive JSON compresses several times
    for mid in (1, 2, 3, 4):
        want = {"i": mid - 1, **EVIDENCE}
        assert _shown(path, mid, capsys)["evidence"]["verdict_evidence"] == want
        reader = open_database(str(path), read_only=True)
        try:
            detail = reader.get_measurement(mid)
            assert detail is not None and detail.evidence["verdict_evidence"] == want
        finally:
            reader.close()
    # A writer adds BLOB rows to the mixed file; export reads rows, not evidence.
    db = open_database(str(path))
    try:
        _record(db, 1, 4, "reset")
    finally:
        db.close()
    assert _raw(path, "SELECT typeof(data) FROM evidence WHERE measurement_id = 5") == [("blob",)]
    assert main(["export", "--db", str(path), "--format", "jsonl"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5
    assert _raw(path, "PRAGMA integrity_check") == [("ok",)]


def test_postgresql_keeps_jsonb_uncompressed() -> None:
    column, dialect = CompressedJSON(), postgresql.dialect()
    assert isinstance(column.load_dialect_impl(dialect), JSONB)
    assert column.process_bind_param(EVIDENCE, dialect) is EVIDENCE
    assert column.process_result_value(EVIDENCE, dialect) is EVIDENCE


ROW = "SELECT id, run_id, service, category, input, verdict, layer, detail, rule, measured_at, "
ROW += "duration_ms, throughput_kbps, baseline_kbps, throughput_bytes, throughput_address, reason "
ROW += "FROM measurements ORDER BY id"


def test_prune_shortens_the_reason_of_rows_past_the_window_and_keeps_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.sqlite"
    long = "The TLS handshake with SNI s.test failed on every attempt while a control " * 2
    db = open_database(str(path))
    try:
        for i in range(6):  # 0-3: 40 days old (past 30 days); 4-5: a day old
            _record(db, 40 if i < 4 else 1, i, long, kbps=123.5 if i == 0 else None)
    finally:
        db.close()
    before = _raw(path, ROW)
    result = prune(str(path), dt.timedelta(days=30), now=NOW)
    assert result.evidence_deleted == 4 and result.measurements_kept == 6
    after = _raw(path, ROW)
    for old, new in zip(before, after, strict=True):
        assert new[:-1] == old[:-1]  # verdict, layer, detail, rule, input, times, rates stay
    assert [r[-1] for r in after] == [PRUNED] * 4 + [long] * 2
    assert after[0][11] == 123.5
    dropped = 4 * (len(long) - len(PRUNED))
    assert _raw(path, "SELECT value FROM meta WHERE key = ?", COMPACTED_KEY) == [(str(dropped),)]
    shown = _shown(path, 1, capsys)
    assert shown["evidence"] == {} and shown["row"]["rule"] == "tls.sni_filter"
    assert _shown(path, 5, capsys)["evidence"]["verdict_evidence"]["i"] == 4  # recent: whole
    again = prune(str(path), dt.timedelta(days=30), now=NOW)  # nothing new: nothing counted
    assert again.evidence_deleted == 0
    assert _raw(path, "SELECT value FROM meta WHERE key = ?", COMPACTED_KEY) == [(str(dropped),)]


def test_a_prune_rewrites_the_file_once_shortened_rows_hold_back_an_eighth_of_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.sqlite"
    long = "x" * 3000  # reasons that are most of each row: shortening them frees pages' insides
    db = open_database(str(path))
    try:
        for i in range(200):
            _record(db, 40 if i < 150 else 1, i, long)
    finally:
        db.close()
    size = path.stat().st_size
    result = prune(str(path), dt.timedelta(days=30), now=NOW, exclusive=True)
    assert result.reclaimed.startswith("vacuum"), result.reclaimed
    assert _raw(path, "SELECT value FROM meta WHERE key = ?", COMPACTED_KEY) == []  # reset
    assert result.bytes_after is not None and result.bytes_after < size * 0.5
    assert _raw(path, "SELECT count(*) FROM measurements WHERE reason = ?", PRUNED) == [(150,)]
    assert _raw(path, "PRAGMA auto_vacuum") == [(2,)]  # still gives pages back in steps
    assert _raw(path, "PRAGMA integrity_check") == [("ok",)]
