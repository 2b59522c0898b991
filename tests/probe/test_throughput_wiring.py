"""Rule 7's plumbing: settings and flags, the daily budget in the store, which inputs are
timed, and the tester's interleaving and refusals (against real local servers)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
import trustme
from blockbuster import blockbuster_ctx

from measurements import http, trust
from measurements.addresses import parse_networks
from probe.classify.verdict import MeasurementRecord, RunInfo, Vantage, Verdict
from probe.cli import main
from probe.config import (
    ConfigError,
    ControlSettings,
    NetworkSettings,
    Settings,
    ThroughputSettings,
    load_settings,
)
from probe.engine.steps import Collector, Measurer
from probe.engine.sweep import Sweep
from probe.engine.throughput import ThroughputTester
from probe.helper.server import HelperSettings
from probe.store import AsyncWriter, open_database
from probe.store.budgets import bytes_since, past_rates
from targets.model import Input, Service, TargetList
from tests.servers.dns_server import Answer, ScriptedDNSServer
from tests.servers.doh_server import DoHServer
from tests.servers.helper_server import running_helper
from tests.servers.throughput_server import ByteServer, Pacer

NAME = "cdn.example.test"
INNOCUOUS = "www.example.com"
LOCAL = parse_networks(["127.0.0.0/8"])
T0 = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


# ------------------------------------------------------------------ settings


def test_defaults_are_conservative() -> None:
    s = load_settings({}, None, environ={}).throughput
    assert s.enabled is True
    assert s.max_bytes_per_test == 1 << 20
    assert s.max_bytes_per_sweep == 10 << 20
    assert s.max_bytes_per_day == 50 << 20
    assert s.max_seconds_per_test == 30.0
    assert (s.trials, s.sample_interval) == (3, 0.1)


def test_off_by_file_env_or_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[throughput]\nenabled = false\n", encoding="utf-8")
    assert load_settings({}, str(path), environ={}).throughput.enabled is False
    assert load_settings({}, None, environ={"PROBE_THROUGHPUT": "0"}).throughput.enabled is False
    for flag, value in (("--no-throughput", False), ("--throughput", True)):
        assert main(["config", "show", flag, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)["settings"]["throughput.enabled"]
        assert shown == {"value": value, "source": "flag"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"throughput.trials": "2"}, "--throughput-trials: must be at least 3"),
        ({"throughput.sample_interval": "5"}, "--sample-interval: must be between 0.005 and 1"),
        ({"throughput.max_seconds_per_test": "0"}, "--max-seconds-per-test: must be more than 0"),
        ({"throughput.max_bytes_per_day": "0"}, "--max-bytes-per-day: must be at least 1"),
        ({"throughput.enabled": "maybe"}, "--throughput: expected true or false"),
    ],
)
def test_bad_values_are_refused(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(flags, None, environ={})


def test_the_throughput_url_is_an_input_once() -> None:
    listed = Service(
        "s", "social", ("https://a.test/", "https://cdn.test/x"), (), "https://cdn.test/x"
    )
    extra = Service("s", "social", ("https://a.test/",), (), "https://cdn.test/x")
    assert [i.value for i in listed.inputs()] == ["https://a.test/", "https://cdn.test/x"]
    assert [i.value for i in extra.inputs()] == ["https://a.test/", "https://cdn.test/x"]


# ------------------------------------------------------------------ the daily budget


def _record(run_id: str, at: dt.datetime, spent: int | None) -> MeasurementRecord:
    verdict = Verdict("accessible", None, "ok", "http.ok", "Fine.")
    return MeasurementRecord(
        run_id, "s", "social", "https://cdn.test/x", verdict, at, 1.0, throughput_bytes=spent
    )


def test_bytes_spent_in_the_last_day_at_this_vantage(tmp_path: Path) -> None:
    db = open_database(str(tmp_path / "r.sqlite"))
    try:
        runs = {}
        for name in ("home", "office", None):
            runs[name] = uuid.uuid4().hex
            db.begin_run(RunInfo(runs[name], T0, Vantage(name=name), "0", {}))
        db.record(_record(runs["home"], T0 - dt.timedelta(hours=30), 1000))  # too long ago
        db.record(_record(runs["home"], T0 - dt.timedelta(hours=2), 200))
        db.record(_record(runs["home"], T0, 30))
        db.record(_record(runs["home"], T0, None))  # no throughput test
        db.record(_record(runs["office"], T0, 4000))  # another vantage
        db.record(_record(runs[None], T0, 50_000))
        since = T0 - dt.timedelta(days=1)
        assert bytes_since(db, since, "home") == 230
        assert bytes_since(db, since, None) == 50_000
        assert bytes_since(db, since, "nowhere") == 0
    finally:
        db.close()


def _timed(run_id: str, at: dt.datetime, kbps: float, verdict: str = "accessible",
           input_: str = "https://cdn.test/x") -> MeasurementRecord:  # fmt: skip
    detail = "throttle.ip" if verdict == "throttled" else "ok"
    v = Verdict(verdict, None, detail, detail, "Timed.", {}, kbps, 9000.0, "192.0.2.7")
    return MeasurementRecord(run_id, "s", "social", input_, v, at, 1.0)


def test_past_rates_at_this_vantage_newest_first(tmp_path: Path) -> None:
    db = open_database(str(tmp_path / "r.sqlite"))
    try:
        runs = {}
        for name in ("home", "office"):
            runs[name] = uuid.uuid4().hex
            db.begin_run(RunInfo(runs[name], T0, Vantage(name=name), "0", {}))
        home = runs["home"]
        db.record(_timed(home, T0 - dt.timedelta(days=40), 5000))  # too long ago
        db.record(_timed(home, T0 - dt.timedelta(days=3), 8000))
        db.record(_timed(home, T0 - dt.timedelta(days=1), 120, "throttled"))
        db.record(_record(home, T0, 30))  # not timed: no rate
        db.record(_timed(home, T0, 7000, input_="https://other.test/y"))
        db.record(_timed(runs["office"], T0, 1.0))  # another vantage
        since = T0 - dt.timedelta(days=30)
        found = past_rates(db, ["https://cdn.test/x", "https://none.test/"], "home", since)
        assert list(found) == ["https://cdn.test/x"]
        got = [(p.kbps, p.verdict, p.detail, p.address) for p in found["https://cdn.test/x"]]
        assert got == [
            (120.0, "throttled", "throttle.ip", "192.0.2.7"),
            (8000.0, "accessible", "ok", "192.0.2.7"),
        ]
        assert found["https://cdn.test/x"][0].measured_at.startswith(
            (T0 - dt.timedelta(days=1)).date().isoformat()
        )
        assert (
            len(
                past_rates(db, ["https://cdn.test/x"], "home", since, per_input=1)[
                    "https://cdn.test/x"
                ]
            )
            == 1
        )
        assert past_rates(db, [], "home", since) == {}
    finally:
        db.close()


# ------------------------------------------------------------------ the tester


def _settings(ca_bundle: str, helper: str | None = None) -> Settings:
    return Settings(
        network=NetworkSettings(ca_bundle=ca_bundle, routable=LOCAL),
        control=ControlSettings(doh=(), innocuous_name=INNOCUOUS, helper=helper),
    )


def _measurer(ca_bundle: str) -> Measurer:
    return Measurer(_settings(ca_bundle))


async def test_trials_interleave_and_rotate(ca: trustme.CA, ca_bundle: str) -> None:
    async with (
        ByteServer(ca, [NAME]) as origin,
        Pacer(origin.port, rate=50_000, names=()) as site,  # records, never paces
        Pacer(origin.port, rate=50_000, names=()) as reference,
    ):
        url = f"https://{NAME}:{site.port}/bytes/1000000"
        settings = ThroughputSettings(
            max_bytes_per_test=9 * 10_000, max_seconds_per_test=9.0, sample_interval=0.01,
        )  # fmt: skip
        refs = (f"https://127.0.0.1:{reference.port}/bytes/1000000",)
        measurer = _measurer(ca_bundle)
        tester = ThroughputTester(settings, refs, measurer, frozenset({url}))
        col = Collector()
        col.http.append(await http.fetch(url, "127.0.0.1", ca_bundle=ca_bundle, max_bytes=1000))
        assert await tester.run(Input("s", "social", "url", url), col) is None
        await measurer.aclose()
    assert [len(col.throughput), len(col.throughput_innocuous), len(col.throughput_reference)] == [
        3, 3, 3,
    ]  # fmt: skip
    assert all(o.bytes == 10_000 and o.failure is None for o in col.throughput)
    assert tester.spent == 90_000
    kinds = sorted(
        [(c.started, "I" if INNOCUOUS.encode() in c.hello else "T") for c in site.connections[1:]]
        + [(c.started, "R") for c in reference.connections]
    )
    assert "".join(k for _, k in kinds) == "TIR" + "IRT" + "RTI"


async def test_a_test_stopped_midway_leaves_no_helper_request_behind(
    ca: trustme.CA, ca_bundle: str
) -> None:
    # The helper times the resource through a slow pacer, so its answer takes seconds; the
    # sweep is stopped (its task cancelled) a moment after the test began.
    async with (
        ByteServer(ca, [NAME]) as origin,
        Pacer(origin.port, rate=20_000) as slow,
        running_helper(HelperSettings(ca_bundle=ca_bundle, routable=LOCAL)) as helper,
    ):
        url = f"https://{NAME}:{slow.port}/bytes/1000000"
        settings = ThroughputSettings(max_bytes_per_test=9 * 30_000, max_seconds_per_test=9 * 2.0)
        refs = (f"https://127.0.0.1:{origin.port}/bytes/1000000",)
        measurer = Measurer(_settings(ca_bundle, helper))
        tester = ThroughputTester(settings, refs, measurer, frozenset({url}))
        col = Collector()
        col.http.append(await http.fetch(url, "127.0.0.1", ca_bundle=ca_bundle, max_bytes=1000))
        test = asyncio.create_task(tester.run(Input("s", "social", "url", url), col))
        await asyncio.sleep(0.5)
        test.cancel()
        await asyncio.wait([test])
        left = [t for t in asyncio.all_tasks() if "HelperClient.ask_throughput" in repr(t)]
        await measurer.aclose()
        # And the helper, whose asker let go, stopped its own downloads too.
        for _ in range(50):
            if all(c.ended is not None for c in slow.connections):
                break
            await asyncio.sleep(0.02)
        assert slow.connections and all(c.ended is not None for c in slow.connections)
    assert test.cancelled() and left == []
    assert col.throughput_helper == []


async def test_refusals(ca: trustme.CA, ca_bundle: str) -> None:
    async with ByteServer(ca, [NAME]) as origin:
        url = f"https://{NAME}:{origin.port}/bytes/1000000"
        ref = (f"https://127.0.0.1:{origin.port}/bytes/1000000",)
        job = Input("s", "social", "url", url)
        measurer = _measurer(ca_bundle)
        ok = Collector()
        ok.http.append(await http.fetch(url, "127.0.0.1", ca_bundle=ca_bundle, max_bytes=1000))
        missing = Collector()
        missing.http.append(
            await http.fetch(
                f"https://{NAME}:{origin.port}/nothing", "127.0.0.1", ca_bundle=ca_bundle
            )
        )
        base = ThroughputSettings(max_bytes_per_test=90_000)
        off = ThroughputTester(dataclasses.replace(base, enabled=False), ref, measurer, frozenset())
        assert "off" in (await off.run(job, ok) or "")
        tester = ThroughputTester(base, ref, measurer, frozenset({url}))
        assert "2xx" in (await tester.run(job, missing) or "")
        spent = ThroughputTester(
            dataclasses.replace(base, max_bytes_per_day=100_000), ref, measurer, frozenset(),
            spent_today=20_000,
        )  # fmt: skip
        assert "budget" in (await spent.run(job, ok) or "")
        no_reference = ThroughputTester(base, ("https://10.1.2.3/",), measurer, frozenset())
        assert "reference" in (await no_reference.run(job, ok) or "")
        await measurer.aclose()
    assert not any(origin.ranges)  # the fetches above only: no throughput download at all
    assert not (ok.throughput or ok.throughput_innocuous or ok.throughput_reference)


async def test_a_sweep_with_throughput_tests_makes_no_blocking_call(
    ca: trustme.CA, ca_bundle: str, tmp_path: Path
) -> None:
    names = ["ref.test", NAME]
    resolver, truth = ScriptedDNSServer(), ScriptedDNSServer()
    for name in names:
        resolver.set(name, Answer("127.0.0.1"))
        truth.set(name, Answer("127.0.0.1"))
    async with resolver, DoHServer(ca, truth) as doh, ByteServer(ca, names) as origin:
        async with Pacer(origin.port, rate=50_000, names={NAME}) as censor:
            url = f"https://{NAME}:{censor.port}/bytes/1000000"
            settings = load_settings(
                {
                    "network.resolver": resolver.address, "network.ca_bundle": ca_bundle,
                    "network.routable": ["127.0.0.0/8"], "control.doh": [doh.url],
                    "control.reference": [f"https://ref.test:{origin.port}/bytes/100000"],
                    "limits.retry_delay": "0.05", "limits.max_body": "8192",
                    "throughput.max_bytes_per_test": "900000",
                    "throughput.max_seconds_per_test": "2.7",
                    "throughput.sample_interval": "0.02",
                },
                None,
                environ={},
            )  # fmt: skip
            targets = TargetList((Service("cdn", "social", (url,), (), url),), (), "test")
            trust.preload(ca_bundle)  # what `probe run` does before its loop starts
            writer = AsyncWriter(open_database(str(tmp_path / "r.sqlite")))
            sweep = Sweep(settings, targets, writer)
            try:
                with blockbuster_ctx():
                    result = await sweep.run()
            finally:
                await writer.close()
    assert result.status == "completed"
    assert [r.verdict.detail for r in result.records] == ["throttle.sni"]
