"""Make tests/probe/data/schema-v2.sql: a database as the probe wrote it before Alembic.

Run it against commit a6a420c (schema version 2, no ``alembic_version`` table), not against
the current tree, whose store would write the newer schema:

    git worktree add --detach /tmp/base a6a420c
    PYTHONPATH=/tmp/base python tests/probe/data/make_schema_v2.py tests/probe/data/schema-v2.sql

It prints what that code's daily byte budget and past-rates history answered on the file;
tests/probe/test_migrations.py hard-codes those figures and checks that the upgraded
database gives the same answers from its new columns. Everything is fixed (ids, times), so
running it again gives the same dump (its index statements are sorted: SQLAlchemy creates
indexes in no fixed order).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

from probe.store.throughput import bytes_since, past_rates

from measurements.observations import TCPObservation
from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
from probe.store import SCHEMA_VERSION, open_database

T0 = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
CDN = "https://cdn.example.test/big.bin"
VIDEO = "https://video.example.test/clip.mp4"
TELEGRAM = "https://web.telegram.org/"
HOME = Vantage(name="home-almaty", network_type="home", asn=9198, country="KZ")


def run_id(n: int) -> str:
    """A fixed run id (32 hex digits)."""
    return f"{n:x}" * 32


def timed(run: str, at: dt.datetime, url: str, verdict: Verdict) -> MeasurementRecord:
    """A throughput URL's record."""
    return MeasurementRecord(run, "cdn", "social", url, verdict, at, 2500.0)


def fine(spent: int, address: str, kbps: float | None) -> Verdict:
    """A timed test that found no throttle, its bytes and address where a6a420c put them."""
    evidence = {"throughput_bytes": spent, "throughput": {"address": address, "trials": 3}}
    return Verdict(
        "accessible", None, "ok", "throughput.not_slower", "Not slower.", evidence, kbps, 9000.0
    )


def fill(path: Path) -> None:
    """Four runs at three declared vantages, eight measurements."""
    db = open_database(str(path))
    one, two, three, four = (run_id(n) for n in (1, 2, 3, 4))
    settings = {"resolver": "system", "doh": ["https://dns.example/dns-query"]}
    db.begin_run(RunInfo(one, T0 - dt.timedelta(days=3), HOME, "0.1.0", settings))
    ok = Verdict("accessible", None, "ok", "all.ok", "Every step succeeded.")
    tcp = TCPObservation("149.154.167.99", 443, None, None, 40.0)
    db.record(MeasurementRecord(one, "telegram", "messaging", TELEGRAM, ok,
                                T0 - dt.timedelta(days=3), 123.5, (tcp,)))  # fmt: skip
    db.record(timed(one, T0 - dt.timedelta(days=3), CDN, fine(3_145_728, "192.0.2.7", 8000.0)))
    db.finish_run(one, "completed", {"accessible": 2}, finished_at=T0 - dt.timedelta(days=3))

    db.begin_run(RunInfo(two, T0 - dt.timedelta(hours=2), HOME, "0.1.0", settings))
    bogon = Verdict("blocked", "dns", "dns.bogon", "dns.bogon", "A private answer.",
                    {"answers": ["10.0.0.1"], "control": ["149.154.167.99"]})  # fmt: skip
    db.record(MeasurementRecord(two, "telegram", "messaging", TELEGRAM, bogon,
                                T0 - dt.timedelta(hours=2), 80.25))  # fmt: skip
    slow = Verdict(
        "throttled", "tls", "throttle.sni", "throttle.sni", "Slow with the target SNI.",
        {"throughput_bytes": 1_048_576, "throughput": {"address": "192.0.2.7"}}, 120.0, 9000.0,
    )  # fmt: skip
    db.record(timed(two, T0 - dt.timedelta(hours=2), CDN, slow))
    # Bytes spent but no rate (too few transfers delivered): counted by the budget only.
    db.record(timed(two, T0 - dt.timedelta(hours=2), VIDEO, fine(40_000, "192.0.2.9", None)))
    skipped = Verdict("accessible", None, "ok", "http.ok", "Fine.",
                      {"throughput_skipped": "the day's budget is spent"})  # fmt: skip
    db.record(MeasurementRecord(two, "cdn", "social", VIDEO, skipped,
                                T0 - dt.timedelta(hours=1, minutes=59), 300.0))  # fmt: skip
    db.finish_run(two, "completed", {"accessible": 2, "blocked": 1, "throttled": 1}, finished_at=T0)

    db.begin_run(RunInfo(three, T0 - dt.timedelta(hours=1), Vantage(), "0.1.0", settings))
    db.record(timed(three, T0 - dt.timedelta(hours=1), CDN, fine(500_000, "198.51.100.4", 5000.0)))
    db.finish_run(three, "interrupted", finished_at=T0)

    office = Vantage(name="office", asn=9198, country="KZ")
    db.begin_run(RunInfo(four, T0 - dt.timedelta(minutes=30), office, "0.1.0", settings))
    db.record(timed(four, T0 - dt.timedelta(minutes=30), CDN, fine(7000, "192.0.2.7", 6500.0)))
    db.finish_run(four, "failed", {}, finished_at=T0)
    db.close()


def figures(path: Path) -> dict[str, object]:
    """What this commit's budget and history queries answer on the file."""
    db = open_database(str(path), read_only=True)
    try:
        day = T0 - dt.timedelta(days=1)
        rates = past_rates(db, [CDN, VIDEO, TELEGRAM], HOME.name, T0 - dt.timedelta(days=30))
        return {
            "bytes_since_day_home": bytes_since(db, day, HOME.name),
            "bytes_since_day_none": bytes_since(db, day, None),
            "bytes_since_day_office": bytes_since(db, day, "office"),
            "bytes_since_4_days_home": bytes_since(db, T0 - dt.timedelta(days=4), HOME.name),
            "past_rates_home": {
                k: [[p.measured_at, p.kbps, p.verdict, p.detail, p.address] for p in v]
                for k, v in rates.items()
            },
        }
    finally:
        db.close()


def main(out: Path) -> None:
    """Write the dump and print the figures."""
    if SCHEMA_VERSION != 2:
        sys.exit(f"this is schema version {SCHEMA_VERSION}: run it against commit a6a420c")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.sqlite"
        fill(path)
        print(json.dumps(figures(path), indent=2))
        with contextlib.closing(sqlite3.connect(path)) as conn:
            statements = list(conn.iterdump())
        indexes = sorted(s for s in statements if s.startswith("CREATE INDEX"))
        rest = [s for s in statements if not s.startswith("CREATE INDEX")]
        assert rest[-1] == "COMMIT;"
        out.write_text("\n".join([*rest[:-1], *indexes, "COMMIT;"]) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
