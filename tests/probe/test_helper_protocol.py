"""The helper's protocol (probe.helper.protocol): every message's schema, its one validator,
and both ends speaking it (a real helper, and scripted helpers on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from measurements.addresses import parse_networks
from measurements.observations import ThroughputObservation, to_jsonable
from probe.classify.evidence import HelperReport
from probe.helper.client import CheckAnswer, HelperClient, ThroughputAnswer
from probe.helper.protocol import (
    MAX_TRANSFER_BYTES,
    MAX_TRIALS,
    MESSAGES,
    TRANSFER_SCHEMA,
    VERSION,
    CheckReport,
    CheckRequest,
    ErrorBody,
    Health,
    Message,
    ProtocolError,
    ThroughputReport,
    ThroughputRequest,
    Whoami,
    transfer_time_limit,
)
from probe.helper.server import HelperSettings
from tests.servers.helper_server import running_helper
from tests.servers.tcp_servers import ClosedPort

TRANSFER = ThroughputObservation(
    url="https://cdn.test/bytes/1000", ip="192.0.2.1", sni="cdn.test", verified=True,
    failure=None, operation=None, status=206, connect_ms=1.5, tls_ms=3.0, first_byte_ms=9.0,
    samples=((100.0, 5000), (200.0, 9000)), bytes=9000, duration_ms=210.5,
    goodput_kbps=350.0, stopped="seconds",
)  # fmt: skip
FAILED = dataclasses.replace(
    TRANSFER, failure="connection_reset", operation="http_body", status=None, samples=(),
    bytes=0, goodput_kbps=None, stopped=None, error="reset by peer", sni=None, verified=False,
)  # fmt: skip

VALID: list[Message] = [
    CheckRequest("https://x.test/path?q=1", "192.0.2.1"),
    CheckRequest("x.test:443", "2001:db8::1"),
    CheckRequest("[2001:db8::1]:80", "0x7f.1"),  # a legacy spelling: the server's policy judges
    CheckReport(),
    CheckReport(addresses=("192.0.2.1", "2001:db8::1"), tcp_ok=False),
    CheckReport(("192.0.2.1",), True, True, 200, "Welcome", 1234, "x.test", 12.5),
    CheckReport(tcp_ok=True, tls_valid=False, status=999, title="", body_length=0),
    ThroughputRequest("https://x.test/big", "192.0.2.1", 1, 0.1, 1),
    ThroughputRequest("http://x.test/", "192.0.2.1", MAX_TRANSFER_BYTES, 30.0, MAX_TRIALS),
    ThroughputReport(()),
    ThroughputReport((TRANSFER, FAILED)),
    Health(),
    Health(ok=False),
    Whoami(unknown="your address is not in the helper's database"),
    Whoami(64500, "Test Net", "KZ"),
    ErrorBody("this helper times no transfers"),
]


def _example(cls: type[Message]) -> dict[str, Any]:
    """The JSON of the first valid example of ``cls``, the richest where there are several."""
    return next(m for m in reversed(VALID) if type(m) is cls).to_json()


@pytest.mark.parametrize("message", VALID, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_json(message: Message) -> None:
    wire = json.dumps(message.to_json(), allow_nan=False)  # what the socket carries
    assert type(message).from_json(json.loads(wire)) == message
    assert type(message).from_json(message.to_json()) == message


_T = "throughput_report.transfers[0]"
INVALID: list[tuple[type[Message], str, Any, str]] = [
    # (message, field set to the value, value, the path the error must name)
    (CheckRequest, "input", None, "check.input"),
    (CheckRequest, "input", 5, "check.input"),
    (CheckRequest, "input", "x.test", "check.input"),  # no port
    (CheckRequest, "input", "ftp://x.test/", "check.input"),
    (CheckRequest, "input", "https://x.test:abc/", "check.input"),
    (CheckRequest, "input", "https://[::1/", "check.input"),
    (CheckRequest, "input", "\ud800.test:80", "check.input"),
    (CheckRequest, "address", "x.test", "check.address"),
    (CheckRequest, "address", "127.0.0.1\x00", "check.address"),
    (CheckRequest, "address", 2130706433, "check.address"),  # a number, not a spelling
    (CheckRequest, "extra", 1, "check.extra"),
    (CheckRequest, "version", 2, "check.version"),
    (CheckReport, "addresses", None, "report.addresses"),
    (CheckReport, "addresses", "192.0.2.1", "report.addresses"),
    (CheckReport, "addresses", ["192.0.2.1", 3], "report.addresses[1]"),
    (CheckReport, "addresses", ["192.0.2.1", "x.test"], "report.addresses[1]"),
    (CheckReport, "tcp_ok", "yes", "report.tcp_ok"),
    (CheckReport, "tcp_ok", 1, "report.tcp_ok"),
    (CheckReport, "tls_valid", 0, "report.tls_valid"),
    (CheckReport, "status", True, "report.status"),
    (CheckReport, "status", 200.0, "report.status"),
    (CheckReport, "status", 99, "report.status"),
    (CheckReport, "status", 1000, "report.status"),
    (CheckReport, "title", ["a"], "report.title"),
    (CheckReport, "body_length", -1, "report.body_length"),
    (CheckReport, "body_length", "12", "report.body_length"),
    (CheckReport, "final_host", 1, "report.final_host"),
    (CheckReport, "first_byte_ms", float("nan"), "report.first_byte_ms"),
    (CheckReport, "first_byte_ms", float("inf"), "report.first_byte_ms"),
    (CheckReport, "first_byte_ms", -0.5, "report.first_byte_ms"),
    (CheckReport, "first_byte_ms", 10**400, "report.first_byte_ms"),
    (CheckReport, "version", "1", "report.version"),
    (CheckReport, "version", True, "report.version"),
    (CheckReport, "version", None, "report.version"),
    (ThroughputRequest, "url", ["https://x.test/"], "throughput.url"),
    (ThroughputRequest, "url", "x.test:443", "throughput.url"),
    (ThroughputRequest, "address", "10.0.0.1.5", "throughput.address"),
    (ThroughputRequest, "max_bytes", True, "throughput.max_bytes"),
    (ThroughputRequest, "max_bytes", 0, "throughput.max_bytes"),
    (ThroughputRequest, "max_bytes", MAX_TRANSFER_BYTES + 1, "throughput.max_bytes"),
    (ThroughputRequest, "max_bytes", 10**3000, "throughput.max_bytes"),
    (ThroughputRequest, "max_seconds", float("nan"), "throughput.max_seconds"),
    (ThroughputRequest, "max_seconds", 0.05, "throughput.max_seconds"),
    (ThroughputRequest, "max_seconds", 31, "throughput.max_seconds"),
    (ThroughputRequest, "max_seconds", None, "throughput.max_seconds"),
    (ThroughputRequest, "trials", 1.0, "throughput.trials"),
    (ThroughputRequest, "trials", 0, "throughput.trials"),
    (ThroughputRequest, "trials", MAX_TRIALS + 1, "throughput.trials"),
    (ThroughputRequest, "more", 1, "throughput.more"),
    (ThroughputReport, "transfers", None, "throughput_report.transfers"),
    (ThroughputReport, "transfers", [None], _T),
    (ThroughputReport, "version", 2, "throughput_report.version"),
    (Health, "ok", "true", "health.ok"),
    (Whoami, "asn", 0, "whoami.asn"),
    (Whoami, "asn", "AS64500", "whoami.asn"),
    (Whoami, "asn", 1 << 32, "whoami.asn"),
    (Whoami, "country", "kz", "whoami.country"),
    (Whoami, "country", "KAZ", "whoami.country"),
    (Whoami, "network_name", 5, "whoami.network_name"),
    (Health, "version", 0, "health.version"),
    (ErrorBody, "error", None, "error_body.error"),
    (ErrorBody, "error", {"why": "x"}, "error_body.error"),
]
TRANSFER_INVALID: list[tuple[str, Any, str]] = [
    ("url", None, ""),
    ("ip", "cdn.test", ""),
    ("sni", 5, ""),
    ("verified", None, ""),
    ("verified", "true", ""),
    ("failure", "blocked_by_censor", ""),  # not of the closed vocabulary
    ("failure", 1, ""),
    ("operation", "dns", ""),
    ("status", True, ""),
    ("status", 42, ""),
    ("connect_ms", "fast", ""),
    ("tls_ms", -1, ""),
    ("first_byte_ms", float("inf"), ""),
    ("samples", None, ""),
    ("samples", [[1.0]], "[0]"),
    ("samples", [[1.0, 2, 3]], "[0]"),
    ("samples", [[100.0, 5], [1.0, 2.5]], "[1][1]"),
    ("samples", [["1", 2]], "[0][0]"),
    ("samples", [[-1.0, 2]], "[0][0]"),
    ("bytes", "9000", ""),
    ("bytes", -1, ""),
    ("bytes", 9000.0, ""),
    ("duration_ms", None, ""),
    ("goodput_kbps", "fast", ""),
    ("stopped", "tired", ""),
    ("error", 3, ""),
    ("kind", "TLSObservation", ""),
]


@pytest.mark.parametrize(("cls", "key", "bad", "path"), INVALID)
def test_each_invalid_field_is_named(cls: type[Message], key: str, bad: Any, path: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        cls.from_json({**_example(cls), key: bad})
    assert caught.value.path == path and str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(("key", "bad", "suffix"), TRANSFER_INVALID)
def test_each_invalid_transfer_field_is_named(key: str, bad: Any, suffix: str) -> None:
    transfer = {**_example(ThroughputReport)["transfers"][0], key: bad}
    with pytest.raises(ProtocolError) as caught:
        ThroughputReport.from_json({"transfers": [_example(ThroughputReport)["transfers"][1],
                                                  transfer]})  # fmt: skip
    assert caught.value.path == f"throughput_report.transfers[1].{key}{suffix}"


REQUIRED: dict[type[Message], set[str]] = {
    CheckRequest: {"input", "address"},
    CheckReport: {"addresses"},
    ThroughputRequest: {"url", "address", "max_bytes", "max_seconds", "trials"},
    ThroughputReport: {"transfers"},
    Health: {"ok"},
    Whoami: set(),
    ErrorBody: {"error"},
}


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
def test_a_missing_field_is_named_unless_it_may_be_null(cls: type[Message]) -> None:
    example = _example(cls)
    for key in set(example) - {"version"}:
        rest = {k: v for k, v in example.items() if k != key}
        if key in REQUIRED[cls]:
            with pytest.raises(ProtocolError, match=rf"^{cls.ROOT}\.{key}: missing$"):
                cls.from_json(rest)
        else:  # absent is null
            assert cls.from_json(rest) == cls.from_json({**example, key: None})


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
def test_versions_requests_closed_answers_open(cls: type[Message]) -> None:
    example = _example(cls)
    no_version = {k: v for k, v in example.items() if k != "version"}
    message = cls.from_json(example)
    # Older peers send no version: version 1 it is. Requests go out without it, since
    # servers before the protocol module refused keys they did not know.
    assert cls.from_json(no_version) == cls.from_json({**example, "version": VERSION}) == message
    assert ("version" in example) is not (cls in (CheckRequest, ThroughputRequest))
    for data in (None, [], [example], "{}", 1):
        with pytest.raises(ProtocolError, match=rf"^{cls.ROOT}: expected a JSON object$"):
            cls.from_json(data)
    if cls in (CheckRequest, ThroughputRequest):
        with pytest.raises(ProtocolError, match=rf"^{cls.ROOT}\.zzz: "):
            cls.from_json({**example, "zzz": None})
    else:  # a newer server may add to version 1
        assert cls.from_json({**example, "zzz": {"new": 1}}) == message


def test_the_wire_is_what_it_was_before_the_protocol_module() -> None:
    # Today's clients and servers keep talking to the new ones: the same keys, the same
    # shapes (the helper's answers built with asdict and to_jsonable; the client's requests).
    report = CheckReport(("192.0.2.1",), True, True, 200, "Welcome", 1234, "x.test", 12.5)
    old = {"version": 1, **dataclasses.asdict(report.evidence())}
    old["addresses"] = list(report.addresses)
    assert report.to_json() == old and list(report.to_json()) == list(old)
    transfers = ThroughputReport((TRANSFER, FAILED)).to_json()
    assert transfers == {"version": 1, "transfers": to_jsonable((TRANSFER, FAILED))}
    assert CheckRequest("x.test:80", "192.0.2.1").to_json() == {
        "input": "x.test:80", "address": "192.0.2.1"
    }  # fmt: skip
    request = ThroughputRequest("https://x.test/", "192.0.2.1", 1000, 2.5, 3).to_json()
    assert list(request) == ["url", "address", "max_bytes", "max_seconds", "trials"]
    assert Health().to_json() == {"version": 1, "ok": True}
    assert ErrorBody("no").to_json() == {"version": 1, "error": "no"}


def test_the_schema_covers_every_field_of_what_it_carries() -> None:
    assert set(CheckReport.SCHEMA) == {f.name for f in dataclasses.fields(HelperReport)}
    assert CheckReport(tcp_ok=True, status=200).evidence() == HelperReport(tcp_ok=True, status=200)
    assert set(TRANSFER_SCHEMA) == {f.name for f in dataclasses.fields(ThroughputObservation)}
    for cls in MESSAGES:
        assert list(cls.SCHEMA) == [f.name for f in dataclasses.fields(cls)], cls
        assert not hasattr(_first(cls), "__dict__")  # slotted
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(_first(cls), next(iter(cls.SCHEMA)), 1)


def _first(cls: type[Message]) -> Message:
    return next(m for m in VALID if type(m) is cls)


def test_max_bytes_reads_a_number_as_before_and_limits_are_shared() -> None:
    body = {**_example(ThroughputRequest), "max_bytes": 1000.7}
    assert ThroughputRequest.from_json(body).max_bytes == 1000
    req = ThroughputRequest("https://x.test/", "192.0.2.1", 1, 2.0, 3)
    assert req.time_limit == transfer_time_limit(3, 2.0) == 22.0


# ------------------------------------------------------------------ the validator is total

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _near(cls: type[Message]) -> st.SearchStrategy[Any]:
    """A valid example of ``cls`` with some fields (a transfer's too) replaced, added or cut."""
    example = _example(cls)
    keys = st.sampled_from([*example, "version", "zzz"])

    def mutate(base: dict[str, Any], changes: dict[str, Any], cut: list[str]) -> dict[str, Any]:
        out = {**base, **changes}
        for key in cut:
            out.pop(key, None)
        return out

    def shaped(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        return st.builds(
            mutate, st.just(base), st.dictionaries(keys, JSON, max_size=3),
            st.lists(keys, max_size=2),
        )  # fmt: skip

    if cls is ThroughputReport:
        transfer_keys = st.sampled_from([*TRANSFER_SCHEMA, "kind"])
        transfer = st.builds(
            mutate, st.just(example["transfers"][0]),
            st.dictionaries(transfer_keys, JSON, max_size=3), st.lists(transfer_keys, max_size=2),
        )  # fmt: skip
        return st.builds(lambda ts: {"version": 1, "transfers": ts}, st.lists(transfer))
    return shaped(example)


def _total(cls: type[Message], data: Any) -> None:
    try:
        message = cls.from_json(data)
    except ProtocolError as exc:
        assert str(exc).startswith(f"{cls.ROOT}")
        return
    assert isinstance(message, cls)
    # What the validator lets through is JSON again (no NaN) and reads back the same.
    wire = json.dumps(message.to_json(), allow_nan=False)
    assert cls.from_json(json.loads(wire)) == message


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_from_json_returns_a_message_or_a_protocol_error(
    cls: type[Message], data: st.DataObject
) -> None:
    _total(cls, data.draw(JSON | _near(cls)))


# ------------------------------------------------------------------ both ends


async def test_the_real_helper_answers_in_the_protocol() -> None:
    settings_ = HelperSettings(routable=parse_networks(["127.0.0.0/8"]))
    async with running_helper(settings_) as url, ClosedPort() as closed:
        async with httpx.AsyncClient() as raw:
            health = await raw.get(f"{url}/v1/health")
            assert Health.from_json(health.json()) == Health()
            check = {"input": f"127.0.0.1:{closed.port}", "address": "127.0.0.1"}
            # A request that says its version is served like one that does not.
            for body in (check, {**check, "version": 1}):
                got = await raw.post(f"{url}/v1/check", json=body)
                assert CheckReport.from_json(got.json()) == CheckReport(tcp_ok=False)
            refused = await raw.post(f"{url}/v1/check", json={**check, "version": 2})
            assert refused.status_code == 400
            assert ErrorBody.from_json(refused.json()).error.startswith("check.version: ")
            for answer in (
                await raw.post(f"{url}/v1/check", json={**check, "address": "x.test"}),
                await raw.get(f"{url}/v1/nowhere"),
            ):
                assert ErrorBody.from_json(answer.json()).error and answer.json()["version"] == 1


def test_the_server_does_not_import_the_client() -> None:
    code = "import sys, probe.helper.server; print('probe.helper.client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@contextlib.asynccontextmanager
async def scripted_helper(answer: Callable[[], web.Response]) -> AsyncIterator[str]:
    """A helper on 127.0.0.1 that gives every request the same answer."""

    async def handle(_: web.Request) -> web.Response:
        return answer()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _report(**change: Any) -> web.Response:
    return web.json_response({**CheckReport(tcp_ok=True).to_json(), **change})


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (lambda: _report(status=True), "report.status: expected an integer 100-999"),
        (lambda: _report(version=2), "report.version: expected 1"),
        (lambda: web.json_response([1]), "report: expected a JSON object"),
        (lambda: web.Response(text="<html>", status=200), "the helper's answer (200) is not JSON"),
        (lambda: web.json_response(ErrorBody("budget spent").to_json(), status=429),
         "the helper refused (429): budget spent"),
        (lambda: web.json_response({"error": "x" * 500}, status=403),  # an older helper's
         "the helper refused (403): " + "x" * 200),
        (lambda: web.json_response({"oops": 1}, status=500), "the helper refused (500): no reason"),
        (lambda: web.Response(text="[" * 100_000, content_type="application/json"),
         "the helper's answer (200) is not JSON"),  # nested too deep for json.loads
    ],
)  # fmt: skip
async def test_an_invalid_answer_is_no_report_and_says_why(
    answer: Callable[[], web.Response], problem: str
) -> None:
    async with scripted_helper(answer) as url:
        client = HelperClient(url, None, 5.0)
        try:
            got = await client.ask_check("x.test:80", "127.0.0.1")
            assert got.report is None and got.problem is not None
            assert got.problem.startswith(problem), got.problem
            assert await client.check("x.test:80", "127.0.0.1") is None
        finally:
            await client.aclose()


_GOOD = ThroughputReport((TRANSFER,)).to_json()


@pytest.mark.parametrize(
    ("body", "transfers", "problem"),
    [
        (_GOOD, (TRANSFER,), None),
        # All or nothing: one transfer wrong and the helper is not trusted for the others.
        ({"version": 1, "transfers": [_GOOD["transfers"][0], {**_GOOD["transfers"][0],
                                                             "bytes": "many"}]},
         (), "throughput_report.transfers[1].bytes: expected an integer >= 0"),
    ],
)  # fmt: skip
async def test_an_invalid_transfer_is_no_transfers_and_says_why(
    body: dict[str, Any], transfers: tuple[ThroughputObservation, ...], problem: str | None
) -> None:
    async with scripted_helper(lambda: web.json_response(body)) as url:
        client = HelperClient(url, None, 5.0)
        try:
            ask = {"max_bytes": 1, "max_seconds": 1.0, "trials": 1}
            got = await client.ask_throughput("https://x.test/", "127.0.0.1", **ask)
            plain = await client.throughput("https://x.test/", "127.0.0.1", **ask)
        finally:
            await client.aclose()
    assert got == ThroughputAnswer(transfers, problem) and plain == transfers


async def test_an_unreachable_helper_says_so() -> None:
    async with ClosedPort() as closed:
        client = HelperClient(f"http://127.0.0.1:{closed.port}", None, 2.0)
        try:
            got = await client.ask_check("x.test:80", "127.0.0.1")
        finally:
            await client.aclose()
    assert got == CheckAnswer(None, "the helper could not be asked: connection_refused")
