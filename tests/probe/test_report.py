"""probe report over a real database with planted patterns (tests/report_data.py), on SQLite
and on a real PostgreSQL server alike: first and last blocked, the dominant detail, the
evening throttle's hours, the rates, outages; the filters; bad input; the JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from probe.cli import main
from probe.report.hours import find_concentration
from tests import report_data as planted


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database holding the planted month: a file, or a database on the test server."""
    target = str(tmp_path / "results.db")
    if request.param == "postgresql":
        target = request.getfixturevalue("postgres_url")
    planted.fill(target)
    return target


def report(capsys: pytest.CaptureFixture[str], db: str, *flags: str) -> dict[str, Any]:
    """The JSON report (exit 0 asserted)."""
    assert main(["report", "--db", db, "--format", "json", *flags]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def group(doc: dict[str, Any], service: str, vantage: str) -> dict[str, Any]:
    [found] = [
        g for g in doc["groups"] if (g["service"], g["vantage"]["name"]) == (service, vantage)
    ]
    return found


def iso(moment: Any) -> str:
    return str(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


def test_the_planted_patterns_are_found(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    doc = report(capsys, db)
    assert doc["measurements"] == planted.DAYS * 24 * 3 * 3
    slow = group(doc, "youtube", "kz-home")
    assert slow["throttled"] == {"count": 21 * 6, "first": iso(planted.THROTTLE_FIRST),
                                 "last": iso(planted.THROTTLE_LAST)}  # fmt: skip
    [hours] = slow["concentrations"]
    assert (hours["verdict"], hours["start_hour"], hours["end_hour"], hours["hours"]) == (
        "throttled", 18, 24, 6,
    )  # fmt: skip
    assert hours["share"] == 1.0 and hours["measurement_share"] == 0.25
    assert slow["dominant_detail"] == {"detail": "throttle.sni", "count": 126, "share": 1.0}
    assert slow["throttle_rates"] == {"count": 126, "median_kbps": 40.0, "min_kbps": 30.0,
                                      "median_baseline_kbps": 8000.0, "median_ratio": 0.005}  # fmt: skip
    blocked = group(doc, "telegram", "kz-mobile")
    assert blocked["blocked"] == {"count": 61, "first": iso(planted.BLOCK_FIRST),
                                  "last": iso(planted.BLOCK_LAST)}  # fmt: skip
    assert blocked["dominant_detail"]["detail"] == "tls.reset"  # 60 of 61; one dns.nxdomain
    assert blocked["concentrations"] == []  # blocked at every hour: no "mostly"
    assert blocked["daily"][9] == ["2026-03-10", 6, 18, 0, 0]  # from 06:07: 18 blocked hours
    quiet = group(doc, "x", "de-lab")
    assert quiet["counts"] == {"accessible": 705, "blocked": 0, "throttled": 0, "inconclusive": 15}
    assert quiet["blocked"] == {"count": 0, "first": None, "last": None}
    assert quiet["dominant_detail"] is None and quiet["throttle_rates"] is None
    assert doc["outages"] == [{"vantage": "kz-home", "started_at": "2026-03-15T02:00:00Z",
                               "ended_at": "2026-03-15T04:00:00Z", "duration_s": 7200.0}]  # fmt: skip
    assert doc["findings"][0].startswith(
        "youtube at kz-home (AS9198, KZ): throttled mostly 18:00-24:00 UTC: 100% of throttled"
    )


@pytest.mark.parametrize(
    ("flags", "groups", "outages"),
    [
        (["--country", "de"], {("telegram", "de-lab"), ("x", "de-lab"), ("youtube", "de-lab")}, 0),
        (["--asn", "AS21299", "--service", "telegram"], {("telegram", "kz-mobile")}, 0),
        (["--vantage", "kz-home", "--service", "youtube", "--service", "x"],
         {("youtube", "kz-home"), ("x", "kz-home")}, 1),
        (["--country", "KZ", "--since", "2026-03-16", "--service", "youtube"],
         {("youtube", "kz-home"), ("youtube", "kz-mobile")}, 0),
        (["--vantage", "nowhere"], set(), 0),
    ],
)  # fmt: skip
def test_filters(
    db: str, capsys: pytest.CaptureFixture[str], flags: list[str], groups: set[Any], outages: int
) -> None:
    doc = report(capsys, db, *flags)
    assert {(g["service"], g["vantage"]["name"]) for g in doc["groups"]} == groups
    assert len(doc["outages"]) == outages


def test_a_time_window_limits_every_figure(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    doc = report(capsys, db, "--since", "2026-03-11T00:00:00Z", "--until", "2026-03-12")
    blocked = group(doc, "telegram", "kz-mobile")
    assert blocked["blocked"]["count"] == 24 and blocked["measurements"] == 24
    assert blocked["dominant_detail"] == {"detail": "tls.reset", "count": 23, "share": 0.9583}
    assert [d[0] for d in blocked["daily"]] == ["2026-03-11"]
    assert doc["first"] == "2026-03-11T00:07:00Z" and doc["last"] == "2026-03-11T23:07:00Z"
    assert doc["filters"]["since"] == "2026-03-11T00:00:00Z"


def test_the_json_shape(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    doc = report(capsys, db, "--service", "youtube")
    assert set(doc) == {"version", "kind", "generated_at", "filters", "first", "last",
                        "measurements", "verdicts", "daily_columns", "findings", "groups",
                        "outages"}  # fmt: skip
    assert (doc["version"], doc["kind"]) == (1, "report")
    assert doc["daily_columns"] == ["day", "accessible", "blocked", "throttled", "inconclusive"]
    g = doc["groups"][0]
    assert set(g) == {"service", "vantage", "measurements", "counts", "blocked", "throttled",
                      "dominant_detail", "throttle_rates", "hours", "concentrations", "daily"}  # fmt: skip
    assert set(g["vantage"]) == {"name", "asn", "country"} and isinstance(g["vantage"]["asn"], int)
    assert {k: len(v) for k, v in g["hours"].items()} == {"blocked": 24, "throttled": 24, "all": 24}
    assert all(len(row) == 5 for row in g["daily"])


def test_the_text_report_is_aligned(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--db", db, "--country", "KZ"]) == 0
    text = capsys.readouterr().out
    assert "throttled mostly 18:00-24:00 UTC: 100% of throttled results in 6 of 24 hours" in text
    lines = text.splitlines()
    start = lines.index("Verdicts per service and vantage") + 1
    header, rule = lines[start], lines[start + 1]
    assert set(rule) == {"-", " "} and len(rule) >= len(header.rstrip())
    assert "|                  ******|" in text  # the hour strip: 18:00 to 24:00 dark
    assert "2026-03 |....TTTTTTTTTTTTTTTTTTTTT..... |" in text


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--since", "yesterday"], "--since"),
        (["--until", "2026-13-01"], "--until"),
        (["--since", "2026-03-02", "--until", "2026-03-01"], "--until"),
        (["--country", "KAZ"], "--country"),
        (["--asn", "AS-1"], "--asn"),
        (["--asn", "0"], "--asn"),
        (["--service", " "], "--service"),
        (["--format", "pdf"], "--format"),
    ],
)
def test_bad_input_exits_2_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    path = tmp_path / "results.db"
    planted.fill(str(path))
    try:
        code = main(["report", "--db", str(path), *flags])
    except SystemExit as exc:  # argparse's own errors (--format's choices)
        code = int(str(exc.code))
    assert code == 2
    assert named in capsys.readouterr().err


def test_a_missing_database_is_exit_2_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "none" / "results.db"
    proc = subprocess.run(
        [sys.executable, "-m", "probe", "report", "--db", str(missing)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert proc.returncode == 2
    assert "no database at" in proc.stderr and str(missing) in proc.stderr
    assert not missing.parent.exists()


def test_a_file_output_is_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, out = tmp_path / "results.db", tmp_path / "report.json"
    planted.fill(str(path))
    assert main(["report", "--db", str(path), "--format", "json", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["kind"] == "report"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".probe-report")] == []


@pytest.mark.parametrize(
    ("counts", "totals", "window"),
    [
        ([0] * 18 + [10] * 6, [10] * 24, (18, 6)),  # every evening
        ([5] * 22 + [50, 50], [10] * 24, None),  # 100 of 210 late: not 75%
        ([10] * 24, [10] * 24, None),  # all day
        ([0] * 18 + [10] * 6, [0] * 18 + [10] * 6, None),  # measured only in the evening
        ([0] * 18 + [1] * 6, [10] * 24, None),  # too few
        ([8, 8, 8] + [0] * 20 + [8], [10] * 24, (23, 4)),  # wraps past midnight
    ],
)
def test_hour_concentration(counts: list[int], totals: list[int], window: Any) -> None:
    found = find_concentration("throttled", counts, totals)
    assert (None if found is None else (found.start_hour, found.hours)) == window
