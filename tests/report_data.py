"""A small results database with planted patterns, for the report's tests (SQLite or
PostgreSQL alike: written through SQLAlchemy Core, the schema made by open_database).

March 2026, a sweep every hour at three vantages, three services per sweep:
- youtube at kz-home is throttled (throttle.sni) from 18:00 to 23:59 UTC every evening from
  March 5 to March 25, at 30, 40 or 50 kbit/s against an 8000 kbit/s baseline;
- telegram at kz-mobile is blocked (tls.reset; one dns.nxdomain) every hour from March 10
  06:00 to March 12 18:00;
- x at de-lab is inconclusive (site.down) at 03:00 on even days;
- kz-home was offline from March 15 02:00 to 04:00 (an outage).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert

from probe.store import open_database
from probe.store.inserts import insert_rows
from probe.store.models import Outage, Run

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
DAYS = 30


@dataclass(frozen=True)
class PlantedVantage:
    name: str
    asn: int
    country: str


KZ_HOME = PlantedVantage("kz-home", 9198, "KZ")
KZ_MOBILE = PlantedVantage("kz-mobile", 21299, "KZ")
DE_LAB = PlantedVantage("de-lab", 3320, "DE")
VANTAGES = (KZ_HOME, KZ_MOBILE, DE_LAB)
SERVICES = ("youtube", "telegram", "x")
THROTTLE_FIRST = dt.datetime(2026, 3, 5, 18, 7, tzinfo=dt.UTC)
THROTTLE_LAST = dt.datetime(2026, 3, 25, 23, 7, tzinfo=dt.UTC)
BLOCK_FIRST = dt.datetime(2026, 3, 10, 6, 7, tzinfo=dt.UTC)
BLOCK_LAST = dt.datetime(2026, 3, 12, 18, 7, tzinfo=dt.UTC)
NXDOMAIN_AT = dt.datetime(2026, 3, 11, 0, 7, tzinfo=dt.UTC)


def _verdict(service: str, vantage: PlantedVantage, at: dt.datetime) -> dict[str, Any]:
    ok = {"verdict": "accessible", "layer": None, "detail": "ok", "rule": "all.ok"}
    if service == "youtube" and vantage is KZ_HOME:
        if THROTTLE_FIRST <= at <= THROTTLE_LAST and at.hour >= 18:
            kbps = 30.0 + 10 * (at.day % 3)
            return {
                "verdict": "throttled",
                "layer": "tls",
                "detail": "throttle.sni",
                "rule": "throttle.sni",
                "throughput_kbps": kbps,
                "baseline_kbps": 8000.0,
            }
        return {**ok, "throughput_kbps": 7000.0, "baseline_kbps": 8000.0}
    if service == "telegram" and vantage is KZ_MOBILE and BLOCK_FIRST <= at <= BLOCK_LAST:
        if at == NXDOMAIN_AT:
            return {
                "verdict": "blocked",
                "layer": "dns",
                "detail": "dns.nxdomain",
                "rule": "dns.nxdomain",
            }
        return {"verdict": "blocked", "layer": "tls", "detail": "tls.reset", "rule": "tls.sni"}
    if service == "x" and vantage is DE_LAB and at.hour == 3 and at.day % 2 == 0:
        return {
            "verdict": "inconclusive",
            "layer": None,
            "detail": "site.down",
            "rule": "site.down",
        }
    return ok


def rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The runs and the measurements (as insert parameters)."""
    runs, measurements = [], []
    for vi, vantage in enumerate(VANTAGES):
        for hour in range(DAYS * 24):
            started = START + dt.timedelta(hours=hour, minutes=7)
            run_id = f"{vi:02d}{hour:030d}"
            runs.append({
                "run_id": run_id, "started_at": started,
                "finished_at": started + dt.timedelta(minutes=1), "status": "completed",
                "probe_version": "test", "vantage_name": vantage.name, "network_type": None,
                "asn": vantage.asn, "country": vantage.country, "settings": {}, "counts": None,
            })  # fmt: skip
            for service in SERVICES:
                measurements.append({
                    "run_id": run_id, "service": service, "category": "social",
                    "input": f"https://{service}.example/", "reason": "planted",
                    "measured_at": started, "duration_ms": 10.0, "throughput_kbps": None,
                    "baseline_kbps": None, **_verdict(service, vantage, started),
                })  # fmt: skip
    return runs, measurements


def fill(target: str) -> None:
    """Write the planted month into a new database at ``target`` (a path or URL)."""
    db = open_database(target)
    runs, measurements = rows()
    try:
        with db.engine.begin() as conn:
            conn.execute(insert(Run), runs)
            insert_rows(conn, measurements)
            conn.execute(insert(Outage), [{
                "vantage_name": KZ_HOME.name,
                "started_at": dt.datetime(2026, 3, 15, 2, tzinfo=dt.UTC),
                "ended_at": dt.datetime(2026, 3, 15, 4, tzinfo=dt.UTC), "detected_by": "sweep",
                "network": None,
            }])  # fmt: skip
    finally:
        db.close()
