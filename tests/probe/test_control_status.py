"""Every control of an input, one line each: a table of cases, a property, and the helper's
own words for "unreachable" and "refused" read from a real client and a real helper."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from measurements.addresses import parse_networks
from measurements.observations import (
    DNSObservation,
    HTTPHop,
    HTTPObservation,
    HTTPTimings,
    ThroughputObservation,
    TLSObservation,
)
from probe.classify.control_status import (
    HELPER_REFUSED,
    HELPER_UNREACHABLE,
    THROUGHPUT_CONTROLS,
    ControlSetup,
    ControlStatus,
    ThroughputRun,
    as_json,
    control_status,
)
from probe.classify.evidence import Controls, HelperReport, InputEvidence, PastRate
from probe.helper.client import HelperClient
from probe.helper.server import HelperSettings
from tests.servers.helper_server import running_helper
from tests.servers.tcp_servers import ClosedPort

HOST = "site.test"
SETUP = ControlSetup(doh=2, helper=True, references=1, throughput=True)
BARE = ControlSetup(doh=0, helper=False, references=1, throughput=False)


def _dns(
    addresses: tuple[str, ...] = ("203.0.113.7",), failure: str | None = None
) -> DNSObservation:
    rcode = None if failure == "generic_timeout_error" else ("NOERROR" if addresses else "NXDOMAIN")
    return DNSObservation(HOST, "A", "doh", "https://doh.test/dns-query", failure, rcode,
                          addresses, (), 5.0)  # fmt: skip


def _tls(failure: str | None = None, valid: bool | None = None) -> TLSObservation:
    return TLSObservation("203.0.113.7", 443, "www.example.com", failure,
                          "tls_handshake" if failure else None, 1.0, 2.0, None, None, (),
                          valid, None, 3.0)  # fmt: skip


def _http(status: int | None = 200, refused: str | None = None) -> HTTPObservation:
    hop = HTTPHop(f"http://{HOST}/", "203.0.113.7", None if status else "connection_reset",
                  None if status else "http_request", status, (), None, None, None, None, b"",
                  False, None, None, HTTPTimings(), refused=refused)  # fmt: skip
    return HTTPObservation(hop.url, (hop,), 4.0)


def _transfer(kbps: float | None = 800.0) -> ThroughputObservation:
    return ThroughputObservation(f"https://{HOST}/big", "203.0.113.7", HOST, True, None, None,
                                 200, 1.0, 2.0, 3.0, (), 1000, 10.0, kbps)  # fmt: skip


URL = InputEvidence("url", f"https://{HOST}/", HOST, "https", dns=(_dns(),))
IP_ENDPOINT = InputEvidence("endpoint", "203.0.113.7:443", None, None)

CASES = [
    # (name, setup, evidence, controls, asked, throughput, {control: (outcome, detail part)})
    ("nothing set up", BARE, URL, Controls(), set(), None,
     {"reference": ("answered", "answered"), "doh": ("not_configured", "no DoH"),
      "tls_innocuous": ("not_needed", ""), "tls_at_doh": ("not_configured", ""),
      "helper": ("not_configured", "no helper configured")}),
    ("doh answered, nothing else needed", SETUP, URL, Controls(doh=(_dns(),)), set(), None,
     {"doh": ("answered", "203.0.113.7"), "helper": ("not_needed", "needed no answer")}),
    ("doh says the name is unknown: an answer", SETUP, URL,
     Controls(doh=(_dns((), "dns_nxdomain_error"),)), set(), None,
     {"doh": ("answered", "NXDOMAIN")}),
    ("doh timed out", SETUP, URL, Controls(doh=(_dns((), "generic_timeout_error"),)), set(), None,
     {"doh": ("failed", "generic_timeout_error")}),
    ("an address needs no lookup", SETUP, IP_ENDPOINT, Controls(), set(), None,
     {"doh": ("not_needed", "names an address")}),
    ("innocuous SNI answered", SETUP, URL, Controls(tls_innocuous=(_tls(),)),
     {"tls_innocuous"}, None,
     {"tls_innocuous": ("answered", "handshake completed")}),
    ("innocuous SNI reset too", SETUP, URL,
     Controls(tls_innocuous=(_tls("connection_reset"),) * 2), {"tls_innocuous"}, None,
     {"tls_innocuous": ("failed", "connection_reset")}),
    ("DoH's address serves a valid chain", SETUP, URL,
     Controls(tls_at_control_addresses=(_tls(valid=True),)), {"tls_at_doh"}, None,
     {"tls_at_doh": ("answered", "chain valid")}),
    ("asked but the deadline ran out", SETUP, URL, Controls(), {"http_innocuous"}, None,
     {"http_innocuous": ("failed", "deadline")}),
    ("a control page not contacted", SETUP, URL,
     Controls(http_at_control_addresses=(_http(None, "10.0.0.1 is a private address"),)),
     {"http_at_doh"}, None, {"http_at_doh": ("refused", "private")}),
    ("helper answered", SETUP, URL,
     Controls(helper=HelperReport(tcp_ok=True, tls_valid=True, status=200)), {"helper"}, None,
     {"helper": ("answered", "connected yes, chain valid yes, status 200")}),
    ("helper refused the address", SETUP, URL,
     Controls(helper_problem="the helper refused (403): 127.0.0.1 is a loopback address"),
     {"helper"}, None, {"helper": ("refused", "loopback")}),
    ("helper unreachable", SETUP, URL,
     Controls(helper_problem="the helper could not be asked: connection_refused"),
     {"helper"}, None, {"helper": ("unreachable", "connection_refused")}),
    ("helper's answer not the protocol's", SETUP, URL,
     Controls(helper_problem="report.status: expected an integer 100-999"), {"helper"}, None,
     {"helper": ("failed", "report.status")}),
    ("offline vantage", SETUP, URL, Controls(vantage_ok=False), set(), None,
     {"reference": ("failed", "none of 1"), "doh": ("skipped", "offline"),
      "helper": ("skipped", "offline")}),
    ("throughput timed", SETUP, URL,
     Controls(throughput_innocuous=(_transfer(),) * 3, throughput_reference=(_transfer(900),),
              throughput_helper_problem="the helper refused (429): budget",
              throughput_history=(PastRate("2026-01-01T00:00:00Z", 900.0, "accessible", "ok"),)),
     set(), ThroughputRun(True),
     {"throughput_innocuous": ("answered", "median 800"),
      "throughput_reference": ("answered", "1 of 1"),
      "throughput_helper": ("refused", "429"), "throughput_history": ("answered", "1 earlier")}),
    ("throughput budget spent", SETUP, URL, Controls(), set(),
     ThroughputRun(False, "the throughput budget is spent"),
     {"throughput_reference": ("skipped", "budget")}),
    ("throughput off", BARE, URL, Controls(), set(), ThroughputRun(False),
     {"throughput_helper": ("not_configured", "off")}),
    ("throughput transfers all failed", SETUP, URL,
     Controls(throughput_innocuous=(_transfer(None),)), set(), ThroughputRun(True),
     {"throughput_innocuous": ("failed", "no body byte"),
      "throughput_history": ("failed", "no earlier test")}),
]  # fmt: skip


def _by_name(statuses: tuple[ControlStatus, ...]) -> dict[str, ControlStatus]:
    return {s.name: s for s in statuses}


def test_the_table() -> None:
    for name, setup, ev, ctl, asked, tput, want in CASES:
        got = _by_name(control_status(setup, ev, ctl, frozenset(asked), tput))
        for control, (outcome, part) in want.items():
            line = got[control]
            assert (line.outcome, part in line.detail) == (outcome, True), (name, line)


def test_every_control_has_one_line_and_throughput_ones_only_for_a_throughput_url() -> None:
    plain = [s.name for s in control_status(SETUP, URL, Controls())]
    assert plain == ["reference", "doh", "tls_innocuous", "tls_at_doh", "http_at_doh",
                     "http_innocuous", "helper", "replay"]  # fmt: skip
    timed = [s.name for s in control_status(SETUP, URL, Controls(), throughput=ThroughputRun(True))]
    assert timed == plain[:-1] + list(THROUGHPUT_CONTROLS) + ["replay"]
    # The SNI replay is for a name over HTTPS only.
    assert "replay" not in [s.name for s in control_status(SETUP, IP_ENDPOINT, Controls())]


REPLAYED = dataclasses.replace(URL, replay=(_transfer(),))
REPLAY_CASES = [
    ("replayed", SETUP, REPLAYED, Controls(replay_innocuous=(_transfer(),)), None,
     ("answered", "1 transfers naming")),
    ("no helper", BARE, URL, Controls(), None, ("not_configured", "no helper")),
    ("the helper runs no listener", SETUP, URL,
     Controls(replay_problem="the helper runs no SNI replay listener (helper.replay_listen)"),
     None, ("not_configured", "replay_listen")),
    ("the helper cannot be reached", SETUP, URL,
     Controls(replay_problem="the helper's health answer, which says where it replays: "
                             "the helper could not be asked: connection_refused"),
     None, ("unreachable", "connection_refused")),
    ("budget spent", SETUP, URL, Controls(), "the throughput budget is spent: 0 bytes left",
     ("skipped", "budget")),
    ("not accessible", SETUP, URL, Controls(), None, ("not_needed", "accessible")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "setup", "ev", "ctl", "skipped", "want"), REPLAY_CASES,
                         ids=[c[0] for c in REPLAY_CASES])  # fmt: skip
def test_the_replay_line(
    name: str,
    setup: ControlSetup,
    ev: InputEvidence,
    ctl: Controls,
    skipped: str | None,
    want: tuple[str, str],
) -> None:
    line = _by_name(control_status(setup, ev, ctl, replay_skipped=skipped))["replay"]
    assert (line.outcome, want[1] in line.detail) == (want[0], True), line
    assert as_json(control_status(BARE, URL, Controls()))[0] == {
        "name": "reference", "configured": True, "asked": True, "outcome": "answered",
        "detail": "a reference host answered before the sweep",
    }  # fmt: skip


_PROBLEMS = st.one_of(
    st.none(), st.text(max_size=20),
    st.sampled_from([f"{HELPER_REFUSED} (403): x", f"{HELPER_UNREACHABLE}: eof_error"]),
)  # fmt: skip


@given(
    setup=st.builds(ControlSetup, st.integers(0, 2), st.booleans(), st.integers(0, 2),
                    st.just("www.example.com"), st.booleans()),
    ctl=st.builds(Controls, vantage_ok=st.booleans(), helper_problem=_PROBLEMS,
                  tls_innocuous=st.lists(st.builds(_tls, st.sampled_from([None, "eof_error"])),
                                         max_size=2).map(tuple),
                  helper=st.none() | st.builds(HelperReport, tcp_ok=st.none() | st.booleans())),
    asked=st.sets(st.sampled_from(["tls_innocuous", "tls_at_doh", "http_at_doh",
                                   "http_innocuous", "helper"])),
    tput=st.none() | st.builds(ThroughputRun, st.booleans(), st.none() | st.text(max_size=5)),
)  # fmt: skip
def test_control_status_is_total_and_consistent(
    setup: ControlSetup, ctl: Controls, asked: set[str], tput: ThroughputRun | None
) -> None:
    statuses = control_status(setup, URL, ctl, frozenset(asked), tput)
    names = [s.name for s in statuses]
    assert len(names) == len(set(names))
    for s in statuses:
        # A control that is not there was neither asked nor answered, and says so.
        assert (s.outcome == "not_configured") == (not s.configured), s
        if s.outcome in ("answered", "failed", "refused", "unreachable") and s.name != "reference":
            assert s.asked, s
        if s.outcome in ("not_needed", "not_configured", "skipped"):
            assert not s.asked, s
        assert s.detail


async def test_the_helper_clients_words_are_the_ones_read(ca_bundle: str) -> None:
    """ "Unreachable" and "refused" as the real client reports a closed port and a refusal."""
    async with ClosedPort() as closed:
        client = HelperClient(f"http://127.0.0.1:{closed.port}", ca_bundle, 5.0)
        try:
            unreachable = await client.ask_check("https://site.test/", "203.0.113.7")
        finally:
            await client.aclose()
    # No --routable: the helper refuses loopback as the probe's own rule would.
    settings = HelperSettings(None, ca_bundle, parse_networks([]), 2.0)
    async with running_helper(settings) as url:
        client = HelperClient(url, ca_bundle, 5.0)
        try:
            refused = await client.ask_check("https://site.test/", "127.0.0.1")
        finally:
            await client.aclose()
    got = {}
    for label, answer in (("unreachable", unreachable), ("refused", refused)):
        ctl = Controls(helper_problem=answer.problem)
        got[label] = _by_name(control_status(SETUP, URL, ctl, frozenset({"helper"})))["helper"]
    assert got["unreachable"].outcome == "unreachable", got
    assert got["refused"].outcome == "refused" and "loopback" in got["refused"].detail, got
