"""A small results database with known answers, written through the store itself (SQLite
file or PostgreSQL URL): three runs at two vantages, an hour apart, a blocked and a throttled
input, a timed throughput test each run, and an outage. What the views, the Datasette
metadata's canned queries and the README's pandas examples are checked against."""

from __future__ import annotations

import dataclasses
import datetime as dt

from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
from probe.store import open_database
from probe.store.daemon_state import close_outages, open_outage
from tests.probe.test_store import BLOCKED, THROTTLED, record

T0 = dt.datetime(2026, 11, 29, 18, 2, 3, 456000, tzinfo=dt.UTC)  # an evening, in UTC
HOME = Vantage(name="home-almaty", network_type="home", asn=9198, country="KZ")
MOBILE = Vantage(name="mobile")  # declared nothing: no AS, no country
WEB = "https://web.telegram.org/"
API = "https://api.telegram.org/"
CDN = "https://cdn.example.test/big.bin"
RUNS = ("a" * 32, "b" * 32, "c" * 32)
OK = Verdict("accessible", None, "ok", "all.ok", "Every step succeeded.")
RESET = Verdict("blocked", "tcp", "tcp.reset", "tcp.reset", "Reset after the SYN.")
FAST = Verdict("accessible", None, "ok", "throughput.not_slower", "Not slower.", {},
               8000.0, 9000.0, "192.0.2.7")  # fmt: skip
SLOW = dataclasses.replace(THROTTLED, throughput_address="192.0.2.7")


def at(hours: float, seconds: float = 0) -> dt.datetime:
    """A moment some hours (and seconds) after T0."""
    return T0 + dt.timedelta(hours=hours, seconds=seconds)


def measured(
    run_id: str, service: str, url: str, verdict: Verdict, when: dt.datetime
) -> MeasurementRecord:
    """One input's record, as a sweep hands it over."""
    return dataclasses.replace(
        record(run_id, verdict, service=service, measured_at=when), input=url
    )


# Run a (18:02 UTC, home): telegram web blocked, api accessible; the CDN throttled.
# Run b (19:02 UTC, home): every input accessible; the CDN at 8000 kbps.
# Run c (20:02 UTC, mobile): telegram blocked on three inputs, dns.bogon twice.
RECORDS: tuple[tuple[int, MeasurementRecord], ...] = (
    (0, measured(RUNS[0], "telegram", WEB, BLOCKED, at(0, 0))),
    (0, measured(RUNS[0], "telegram", API, OK, at(0, 1))),
    (0, measured(RUNS[0], "cdn", CDN, SLOW, at(0, 2))),
    (1, measured(RUNS[1], "telegram", WEB, OK, at(1, 0))),
    (1, measured(RUNS[1], "telegram", API, OK, at(1, 1))),
    (1, measured(RUNS[1], "cdn", CDN, FAST, at(1, 2))),
    (2, measured(RUNS[2], "telegram", "149.154.167.99:443", RESET, at(2, 0))),
    (2, measured(RUNS[2], "telegram", WEB, BLOCKED, at(2, 1))),
    (2, measured(RUNS[2], "telegram", API, BLOCKED, at(2, 2))),
)


def fill(url: str) -> None:
    """Write the runs, their measurements and an outage of the mobile vantage."""
    db = open_database(url)
    try:
        for n, (run_id, vantage) in enumerate(zip(RUNS, (HOME, HOME, MOBILE), strict=True)):
            db.begin_run(RunInfo(run_id, at(n), vantage, "0.1.0", {"resolver": "system"}))
            for _, rec in (r for r in RECORDS if r[0] == n):
                db.record(rec)
            db.finish_run(run_id, "completed", {"inputs": 3}, finished_at=at(n, 60))
        open_outage(db, "mobile", at(1, 30), "sweep", None)
        close_outages(db, "mobile", at(1, 90))
    finally:
        db.close()
