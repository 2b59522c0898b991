"""Export: the rows the store streams, their filters, and the exact JSONL and CSV written."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from measurements.observations import DNSObservation, TCPObservation
from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
from probe.store import Database, ExportRow, open_database
from probe.store.export import (
    EXPORT_COLUMNS,
    SERVICE_COLUMNS,
    export_record,
    format_utc,
    service_records,
    write_csv,
    write_csv_records,
    write_jsonl,
)

T0 = dt.datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=dt.UTC)
RUN_A = "aaaaaaaa" + "1" * 24
RUN_B = "bbbbbbbb" + "2" * 24

OK = Verdict("accessible", None, "ok", "all.ok", "Every step succeeded.")
RESET = Verdict("blocked", "tls", "tls.reset", "tls.sni_filter", "Reset with the target SNI only.")
SLOW = Verdict(
    "throttled",
    "tls",
    "throttle.sni",
    "throttle.sni",
    "A small fraction of the baseline.",
    throughput_kbps=12.5,
    baseline_kbps=8000.0,
)
# Addresses the probe saw: they stay in the evidence and never reach an export.
OBSERVATIONS = (
    DNSObservation(
        "twitter.com", "A", "udp", "192.0.2.53:53", None, "NOERROR", ("198.51.100.7",), (), 3.0
    ),
    TCPObservation("198.51.100.7", 443, None, 20.0, 20.0),
)


def _record(run_id: str, service: str, verdict: Verdict, minutes: int) -> MeasurementRecord:
    """A record measured some minutes after T0."""
    return MeasurementRecord(
        run_id=run_id,
        service=service,
        category="social" if service == "twitter" else "messaging",
        input=f"https://{service}.example/",
        verdict=verdict,
        measured_at=T0 + dt.timedelta(minutes=minutes),
        duration_ms=250.0,
        observations=OBSERVATIONS,
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """Two runs from two vantages: A declares everything, B declares nothing."""
    database = open_database(str(tmp_path / "results.sqlite"))
    database.begin_run(RunInfo(RUN_A, T0, Vantage("home-almaty", "home", 9198, "KZ"), "0.1.0", {}))
    database.begin_run(RunInfo(RUN_B, T0, Vantage(), "0.1.0", {}))
    # Inserted out of time order: export must sort by measured_at, then id.
    database.record(_record(RUN_A, "twitter", RESET, 10))
    database.record(_record(RUN_A, "telegram", OK, 0))
    database.record(_record(RUN_B, "telegram", SLOW, 5))
    database.record(_record(RUN_B, "twitter", OK, 10))
    yield database
    database.close()


def _keys(rows: list[ExportRow]) -> list[tuple[str, str]]:
    """(run, service) of each row, in order, for compact assertions."""
    return [(r.run_id[0], r.service) for r in rows]


def test_rows_are_streamed_in_time_order(db: Database) -> None:
    rows = db.iter_export_rows()
    assert isinstance(rows, Iterator)  # a generator: nothing is read before it is consumed
    got = list(rows)
    assert _keys(got) == [("a", "telegram"), ("b", "telegram"), ("a", "twitter"), ("b", "twitter")]
    assert got[2].measurement_id < got[3].measurement_id  # same time: by id
    assert all(r.measured_at.tzinfo is dt.UTC for r in got)


def test_export_filters(db: Database) -> None:
    since = T0 + dt.timedelta(minutes=5)
    assert _keys(list(db.iter_export_rows(since=since))) == [
        ("b", "telegram"),
        ("a", "twitter"),
        ("b", "twitter"),
    ]
    # A naive since is read as UTC; an aware one in another zone is the same instant.
    almaty = since.astimezone(dt.timezone(dt.timedelta(hours=5)))
    assert _keys(list(db.iter_export_rows(since=almaty))) == _keys(
        list(db.iter_export_rows(since=since.replace(tzinfo=None)))
    )
    assert len(list(db.iter_export_rows(since=almaty))) == 3
    assert _keys(list(db.iter_export_rows(service="twitter"))) == [
        ("a", "twitter"),
        ("b", "twitter"),
    ]
    assert _keys(list(db.iter_export_rows(run_id=RUN_B))) == [("b", "telegram"), ("b", "twitter")]
    assert _keys(list(db.iter_export_rows(since=since, service="telegram", run_id=RUN_B))) == [
        ("b", "telegram")
    ]
    assert list(db.iter_export_rows(service="whatsapp")) == []
    # until: before it, not at it (a month is since its first day until the next's).
    until = T0 + dt.timedelta(minutes=10)
    assert _keys(list(db.iter_export_rows(until=until))) == [("a", "telegram"), ("b", "telegram")]
    assert _keys(list(db.iter_export_rows(since=since, until=until))) == [("b", "telegram")]


def test_columns_are_fixed() -> None:
    assert EXPORT_COLUMNS == (
        "measurement_id", "run_id", "service", "category", "input", "verdict", "layer",
        "detail", "rule", "measured_at", "duration_ms", "throughput_kbps", "baseline_kbps",
        "vantage_name", "network_type", "asn", "country", "reason",
    )  # fmt: skip
    assert set(EXPORT_COLUMNS) == {f.name for f in dataclasses.fields(ExportRow)}
    assert not any("ip" in c.split("_") or "address" in c for c in EXPORT_COLUMNS)


def test_format_utc() -> None:
    assert format_utc(T0) == "2026-11-29T01:02:03.456Z"
    almaty = dt.timezone(dt.timedelta(hours=5))
    assert format_utc(dt.datetime(2026, 11, 29, 6, 0, tzinfo=almaty)) == "2026-11-29T01:00:00.000Z"
    with pytest.raises(ValueError, match="naive"):
        format_utc(T0.replace(tzinfo=None))


def test_jsonl_exact(db: Database) -> None:
    out = io.StringIO()
    assert write_jsonl(db.iter_export_rows(run_id=RUN_A), out) == 2
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and out.getvalue().endswith("\n")
    objects = [json.loads(line) for line in lines]
    assert [list(o) for o in objects] == [list(EXPORT_COLUMNS)] * 2
    telegram_id = objects[0]["measurement_id"]
    assert isinstance(telegram_id, int)
    assert objects[0] == {
        "measurement_id": telegram_id,
        "run_id": RUN_A,
        "service": "telegram",
        "category": "messaging",
        "input": "https://telegram.example/",
        "verdict": "accessible",
        "layer": None,
        "detail": "ok",
        "rule": "all.ok",
        "measured_at": "2026-11-29T01:02:03.456Z",
        "duration_ms": 250.0,
        "throughput_kbps": None,
        "baseline_kbps": None,
        "vantage_name": "home-almaty",
        "network_type": "home",
        "asn": 9198,
        "country": "KZ",
        "reason": "Every step succeeded.",
    }
    assert objects[1]["verdict"] == "blocked"
    assert objects[1]["layer"] == "tls"
    assert objects[1]["measured_at"] == "2026-11-29T01:12:03.456Z"
    assert '"layer": null' in lines[0]  # nulls are written, not left out


def test_csv_exact(db: Database) -> None:
    out = io.StringIO()
    assert write_csv(db.iter_export_rows(run_id=RUN_B), out) == 2
    text = out.getvalue()
    lines = text.split("\n")
    assert lines[0] == ",".join(EXPORT_COLUMNS)
    first_id = next(db.iter_export_rows(run_id=RUN_B)).measurement_id
    assert lines[1] == (
        f"{first_id},{RUN_B},telegram,messaging,https://telegram.example/,throttled,tls,"
        "throttle.sni,throttle.sni,2026-11-29T01:07:03.456Z,250.0,12.5,8000.0,,,,,"
        "A small fraction of the baseline."
    )
    assert lines[3] == "" and len(lines) == 4  # every line ends in "\n", no "\r"
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert parsed[1]["service"] == "twitter"
    assert parsed[1]["layer"] == "" and parsed[1]["asn"] == ""  # null -> empty cell


def test_csv_quotes_awkward_values(db: Database) -> None:
    row = next(db.iter_export_rows())
    awkward = dataclasses.replace(row, input='https://x.example/a,b?"q"', vantage_name="línea")
    out = io.StringIO()
    write_csv([awkward], out)
    parsed = next(csv.DictReader(io.StringIO(out.getvalue())))
    assert parsed["input"] == 'https://x.example/a,b?"q"'
    assert parsed["vantage_name"] == "línea"
    assert export_record(awkward)["vantage_name"] == "línea"


def test_csv_cells_a_spreadsheet_would_evaluate_are_quoted(tmp_path: Path) -> None:
    database = open_database(str(tmp_path / "formulas.sqlite"))
    try:
        vantage = Vantage("@SUM(1)", "home", 9198, "KZ")
        database.begin_run(RunInfo(RUN_A, T0, vantage, "0.1.0", {}))
        hostile = [
            ('=HYPERLINK("x")', "https://a.example/\n=1+1"),
            ("+cmd", "@SUM(1)"),
            ("-2+3", "\t=1"),
            ("\rx", "https://b.example/\r\nsecond line"),
        ]
        for minutes, (service, url) in enumerate(hostile):
            record = _record(RUN_A, "twitter", OK, minutes)
            database.record(dataclasses.replace(record, service=service, input=url))
        out = io.StringIO()
        assert write_csv(database.iter_export_rows(), out) == 4
    finally:
        database.close()
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert len(rows) == 1 + len(hostile)  # newlines inside cells did not break rows
    parsed = [dict(zip(EXPORT_COLUMNS, row, strict=True)) for row in rows[1:]]
    assert [(p["service"], p["input"]) for p in parsed] == [
        ("'" + service, url if url.startswith("https:") else "'" + url) for service, url in hostile
    ]
    assert {p["vantage_name"] for p in parsed} == {"'@SUM(1)"}
    assert {p["duration_ms"] for p in parsed} == {"250.0"}  # numbers are not text: as they are
    assert {p["asn"] for p in parsed} == {"9198"}


def test_empty_export() -> None:
    out = io.StringIO()
    assert write_csv([], out) == 0
    assert out.getvalue() == ",".join(EXPORT_COLUMNS) + "\n"
    out = io.StringIO()
    assert write_jsonl([], out) == 0
    assert out.getvalue() == ""


def test_observed_addresses_never_reach_an_export(db: Database) -> None:
    jsonl, csv_out = io.StringIO(), io.StringIO()
    write_jsonl(db.iter_export_rows(), jsonl)
    write_csv(db.iter_export_rows(), csv_out)
    for text in (jsonl.getvalue(), csv_out.getvalue()):
        assert "198.51.100.7" not in text
        assert "192.0.2.53" not in text


def test_services_export_one_row_per_service_per_run_with_its_scope(db: Database) -> None:
    db.record(_record(RUN_A, "twitter", OK, 11))  # twitter in run A: 1 of 2 blocked
    records = service_records(db.iter_export_rows())
    assert [(r["run_id"][0], r["service"]) for r in records] == [
        ("a", "telegram"), ("b", "telegram"), ("a", "twitter"), ("b", "twitter"),
    ]  # fmt: skip
    assert all(list(r) == list(SERVICE_COLUMNS) for r in records)
    by_key = {(r["run_id"][0], r["service"]): r for r in records}
    assert {k: (r["verdict"], r["scope"], r["affected"], r["conclusive"])
            for k, r in by_key.items()} == {
        ("a", "telegram"): ("accessible", None, 0, 1),
        ("b", "telegram"): ("throttled", "all", 1, 1),
        ("a", "twitter"): ("blocked", "partial", 1, 2),
        ("b", "twitter"): ("accessible", None, 0, 1),
    }  # fmt: skip
    twitter = by_key[("a", "twitter")]
    assert (twitter["blocked"], twitter["accessible"], twitter["inputs"]) == (1, 1, 2)
    assert (twitter["detail"], twitter["layer"], twitter["asn"]) == ("tls.reset", "tls", 9198)
    assert twitter["first_measured_at"] == "2026-11-29T01:12:03.456Z"
    out = io.StringIO()
    assert write_csv_records(records, SERVICE_COLUMNS, out) == 4
    parsed = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert parsed[2]["scope"] == "partial" and parsed[0]["scope"] == ""
