"""The step planner: which control each set of observations so far calls for, and which
later redirect hop is measured as an input of its own, as tables."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from measurements.addresses import address_problem
from measurements.observations import HTTPHop
from probe.classify.evidence import InputEvidence
from probe.engine.planner import (
    Ask,
    ControlKind,
    LaterHop,
    Origin,
    Seen,
    http_follows,
    later_hop,
    next_controls,
    origin,
)
from tests.probe.test_classify import HOST, OTHER, PUBLIC, dns, doh, hop, http, tcp, tls, url

RST, TIMEOUT, NX = "connection_reset", "generic_timeout_error", "dns_nxdomain_error"
PLAIN = {"input": f"http://{HOST}/", "scheme": "http"}


def refusal(ip: str) -> str | None:
    problem = address_problem(ip)
    return f"{ip} is {problem}" if problem else None


@dataclass
class Row:
    name: str
    ev: InputEvidence
    expect: tuple[Ask, ...]
    doh: tuple[str, ...] = ()  # DoH's answer
    helper: bool = True
    asked: frozenset[ControlKind] = frozenset()
    address: str | None = PUBLIC
    doh_failure: str | None = None  # DoH's failure, for a name it does not know


ROWS = [
    Row(
        "a healthy https page needs nothing",
        url(dns=(dns(PUBLIC),), tls=(tls(),), http=(http(hop()),)),
        (),
    ),
    Row(
        "an endpoint that connects needs nothing",
        InputEvidence("endpoint", f"{PUBLIC}:443", None, None, tcp=(tcp(),)),
        (),
    ),
    Row(
        "an endpoint that never connects asks the helper",
        InputEvidence("endpoint", f"{PUBLIC}:443", None, None, tcp=(tcp(RST), tcp(RST))),
        (Ask("helper"),),
    ),
    Row(
        "no helper configured: nothing to ask",
        InputEvidence("endpoint", f"{PUBLIC}:443", None, None, tcp=(tcp(RST),)),
        (),
        helper=False,
    ),
    Row(
        "a reset in the handshake: the innocuous SNI (rule 5), not the helper",
        url(dns=(dns(PUBLIC),), tls=(tls(RST, "tls_handshake"),)),
        (Ask("tls_innocuous"),),
    ),
    Row(
        "a connect failure: no innocuous SNI (nothing was said), the helper",
        url(dns=(dns(PUBLIC),), tls=(tls(TIMEOUT, "connect"),)),
        (Ask("helper"),),
    ),
    Row(
        "a reset with DoH elsewhere: DoH's address too",
        url(dns=(dns(PUBLIC),), tls=(tls(RST, "tls_handshake"),)),
        (Ask("tls_innocuous"), Ask("tls_at_doh", OTHER)),
        doh=(OTHER,),
        helper=False,
    ),
    Row(
        "DoH agrees with the resolver: no control at its address",
        url(dns=(dns(PUBLIC),), tls=(tls(valid=False),)),
        (Ask("helper"),),
        doh=(PUBLIC,),
    ),
    Row(
        "an invalid chain with DoH elsewhere: DoH's address, then the helper",
        url(dns=(dns(PUBLIC),), tls=(tls(valid=False),)),
        (Ask("tls_at_doh", OTHER), Ask("helper")),
        doh=(OTHER,),
    ),
    Row(
        "DoH's only other address is private: not contacted",
        url(dns=(dns(PUBLIC),), tls=(tls(valid=False),)),
        (),
        doh=("10.0.0.1",),
        helper=False,
    ),
    Row(
        "plain http: the page at DoH's address and the helper's copy",
        url(**PLAIN, dns=(dns(PUBLIC),), http=(http(hop(url=f"http://{HOST}/")),)),
        (Ask("http_at_doh", OTHER), Ask("helper")),
        doh=(OTHER,),
    ),
    Row(
        "a reset after the request: the innocuous Host, the helper",
        url(dns=(dns(PUBLIC),), tls=(tls(),), http=(http(hop(None, RST, "http_request")),)),
        (Ask("http_innocuous"), Ask("helper")),
    ),
    Row(
        "a slow body: the innocuous Host too",
        url(dns=(dns(PUBLIC),), tls=(tls(),), http=(http(hop(None, TIMEOUT, "http_body")),)),
        (Ask("http_innocuous"), Ask("helper")),
    ),
    Row(
        "a refused redirect is nobody's control",
        url(
            dns=(dns(PUBLIC),),
            tls=(tls(),),
            http=(http(hop(301), hop(None, refused="a private address")),),
        ),
        (),
        helper=False,
    ),
    Row(
        "each control at most once",
        url(dns=(dns(PUBLIC),), tls=(tls(RST, "tls_handshake"),)),
        (),
        asked=frozenset({"tls_innocuous", "helper"}),
    ),
    Row(
        "a ghost name over HTTPS: the resolver asked for a made-up name",
        url(dns=(dns(OTHER),), tls=(tls(ip=OTHER, valid=False),)),
        (Ask("dns_nonexistent"),),
        helper=False,
        address=OTHER,
        doh_failure=NX,
    ),
    Row(
        "a ghost name's plain-HTTP page: a made-up name, then an innocuous Host",
        url(**PLAIN, dns=(dns(OTHER),), http=(http(hop(url=f"http://{HOST}/", ip=OTHER)),)),
        (Ask("dns_nonexistent"), Ask("http_innocuous")),
        helper=False,
        address=OTHER,
        doh_failure=NX,
    ),
    Row(
        "a ghost name whose address gave no page: the made-up name only (and the helper)",
        url(**PLAIN, dns=(dns(OTHER),), http=(http(hop(None, TIMEOUT, "connect", ip=OTHER)),)),
        (Ask("dns_nonexistent"), Ask("helper")),
        address=OTHER,
        doh_failure=NX,
    ),
    Row(
        "DoH failed (not NXDOMAIN): no ghost controls",
        url(dns=(dns(OTHER),), tls=(tls(ip=OTHER, valid=False),)),
        (),
        helper=False,
        address=OTHER,
        doh_failure=TIMEOUT,
    ),
    Row(
        "a ghost name asked about once",
        url(**PLAIN, dns=(dns(OTHER),), http=(http(hop(url=f"http://{HOST}/", ip=OTHER)),)),
        (),
        helper=False,
        address=OTHER,
        doh_failure=NX,
        asked=frozenset({"dns_nonexistent", "http_innocuous"}),
    ),
    Row(
        "nothing contacted: no helper",
        InputEvidence("endpoint", f"{PUBLIC}:443", None, None, tcp=(tcp(RST),)),
        (),
        address=None,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_next_controls(row: Row) -> None:
    answer = (doh(*row.doh, failure=row.doh_failure),) if row.doh or row.doh_failure else ()
    seen = Seen(row.ev, answer, row.address, row.asked, row.helper)
    assert next_controls(seen, refusal) == row.expect


def test_http_follows_only_a_valid_handshake() -> None:
    assert http_follows(url())
    assert http_follows(url(tls=(tls(RST, "tls_handshake"), tls())))
    assert not http_follows(url(tls=(tls(), tls(RST, "tls_handshake"))))
    assert not http_follows(url(tls=(tls(valid=False),)))


# Which later hop is measured as an input of its own (``later_hop``).
FIRST = f"http://{HOST}/"
BARE = "https://example.test/"
SAME = f"https://{HOST}/"


@dataclass
class HopRow:
    name: str
    hops: tuple[tuple[HTTPHop, ...], ...]  # each fetch attempt's hops
    expect: LaterHop | None
    measured: frozenset[Origin] = frozenset({origin(FIRST)})
    before: tuple[str, ...] = ()


def _chain(*attempts: tuple[HTTPHop, ...]) -> InputEvidence:
    return url(**PLAIN, dns=(dns(PUBLIC),), http=tuple(http(*a) for a in attempts))


RESET_AT_BARE = (hop(301, url=FIRST), hop(None, RST, "tls_handshake", url=BARE))
NO_ADDRESS = hop(None, url=BARE, ip=None, refused="no address for example.test")
OUT_OF_RANGE = hop(None, url="http://example.test:99999/", ip=None, refused="port out of range")
AT_BARE = LaterHop(2, BARE, (FIRST, BARE))
HOP_ROWS = [
    HopRow("a healthy chain: no hop", ((hop(301, url=FIRST), hop(url=BARE)),), None),
    HopRow(
        "the first hop failed: the input's own rules",
        ((hop(None, RST, "http_request", url=FIRST),),),
        None,
    ),
    HopRow("http to https, reset at the https hop", (RESET_AT_BARE,) * 2, AT_BARE),
    HopRow(
        "a name with no address (the resolver denied it)",
        ((hop(302, url=FIRST), NO_ADDRESS),),
        AT_BARE,
    ),
    HopRow(
        "the third hop",
        ((hop(302, url=FIRST), hop(301, url=SAME), hop(None, RST, "tls_handshake", url=BARE)),),
        LaterHop(3, BARE, (FIRST, SAME, BARE)),
    ),
    HopRow(
        "one attempt reached the page: no hop",
        (RESET_AT_BARE, (hop(301, url=FIRST), hop(url=BARE))),
        None,
    ),
    HopRow(
        "the same origin, another path: the input's own",
        ((hop(302, url=FIRST), hop(None, RST, "http_request", url=f"{FIRST}login")),),
        None,
    ),
    HopRow(
        "an origin measured already: no loop",
        (RESET_AT_BARE,),
        None,
        frozenset({origin(FIRST), origin(BARE)}),
    ),
    HopRow("a location no fetch can ask for", ((hop(302, url=FIRST), OUT_OF_RANGE),), None),
    HopRow(
        "a hop of a hop: numbered in the input's chain",
        ((hop(301, url=SAME), hop(None, RST, "tls_handshake", url=BARE)),),
        LaterHop(3, BARE, ("http://short.test/", SAME, BARE)),
        frozenset({origin("http://short.test/"), origin(SAME)}),
        ("http://short.test/",),
    ),
]


@pytest.mark.parametrize("row", HOP_ROWS, ids=[r.name for r in HOP_ROWS])
def test_later_hop(row: HopRow) -> None:
    assert later_hop(_chain(*row.hops), row.measured, row.before) == row.expect


def test_the_innocuous_host_is_asked_only_for_the_input_s_own_url() -> None:
    # A later hop was cut at another address, or on another path, than the control asks.
    cut_later = _chain((hop(302, url=FIRST), hop(None, RST, "http_request", url=BARE)))
    seen = Seen(cut_later, (), PUBLIC, frozenset(), helper=False)
    assert next_controls(seen, refusal) == ()
    cut_here = _chain((hop(None, RST, "http_request", url=FIRST),))
    seen = Seen(cut_here, (), PUBLIC, frozenset(), helper=False)
    assert next_controls(seen, refusal) == (Ask("http_innocuous"),)
