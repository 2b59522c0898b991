# ruff: noqa: E501  (tables of cases read best one row per line)
"""Redirect hops judged like inputs: when the input takes a later hop's verdict, as a table,
and as properties (a hop never turns a blocked input into anything else, nor makes one
blocked that neither it nor any hop shows)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.classify import classify
from probe.classify.evidence import Controls, HelperReport, HopEvidence, InputEvidence
from tests.probe.test_classify import FP, HOST, PUBLIC, dns, doh, hop, http, tls, url
from tests.probe.test_classify_properties import controls, evidence

RST, TIMEOUT, NX = "connection_reset", "generic_timeout_error", "dns_nxdomain_error"
FIRST = f"http://{HOST}/"
BARE = "https://example.test/"
THIRD = "https://third.test/"
INNOCUOUS_OK = Controls(doh=(doh(PUBLIC),), tls_innocuous=(tls(sni="www.example.com"),))


def chain(*hops: object) -> InputEvidence:
    """An http input whose every fetch gave these hops."""
    return url(
        input=FIRST,
        scheme="http",
        dns=(dns(PUBLIC),),
        http=(http(*hops),) * 2,  # type: ignore[arg-type]
    )


def at(number: int, ev: InputEvidence, ctl: Controls, *chain_urls: str) -> HopEvidence:
    return HopEvidence(number, chain_urls[-1], chain_urls, ev, ctl)


def https(target: str, **kw: object) -> InputEvidence:
    return url(input=target, **kw)


RESET_AT_BARE = chain(hop(301, url=FIRST), hop(None, RST, "tls_handshake", url=BARE))
NO_ADDRESS = chain(hop(302, url=FIRST), hop(None, url=BARE, ip=None, refused="no address"))
SNI_RESET = https(BARE, dns=(dns(PUBLIC),), tls=(tls(RST, "tls_handshake"),) * 2)
DENIED = https(BARE, dns=(dns(failure=NX),) * 2)
HEALTHY = https(BARE, dns=(dns(PUBLIC),), tls=(tls(),), http=(http(hop(url=BARE)),))
DOWN = https(BARE, dns=(dns(PUBLIC),), tls=(tls(TIMEOUT, "tls_handshake"),) * 2)
DOWN_CTL = Controls(doh=(doh(PUBLIC),), tls_innocuous=(tls(TIMEOUT, "tls_handshake"),))
WARNING = chain(
    hop(302, url=FIRST, headers=(("Location", "http://warning.rt.ru/"),)),
    hop(None, url="http://warning.rt.ru/", ip=None, refused="no address"),
)


@dataclass
class Case:
    name: str
    ev: InputEvidence
    verdict: str
    detail: str
    hop: int | None  # the hop the evidence names, if the input took a hop's verdict
    ctl: Controls = field(default_factory=Controls)


CASES = [
    Case("no hop: the chain's own verdict", RESET_AT_BARE, "inconclusive", "control.failed", None),
    Case(
        "SNI reset at the https hop",
        dataclasses.replace(RESET_AT_BARE, hops=(at(2, SNI_RESET, INNOCUOUS_OK, FIRST, BARE),)),
        "blocked", "tls.reset", 2,
    ),
    Case(
        "the resolver denied the hop's name, DoH resolves it",
        dataclasses.replace(NO_ADDRESS, hops=(at(2, DENIED, Controls(doh=(doh(PUBLIC),)), FIRST, BARE),)),
        "blocked", "dns.nxdomain", 2,
    ),
    Case(
        "the hop is down for everyone: inconclusive, the hop named",
        dataclasses.replace(RESET_AT_BARE, hops=(at(2, DOWN, DOWN_CTL, FIRST, BARE),)),
        "inconclusive", "control.failed", 2,
    ),
    Case(
        "the hop is accessible on its own: what the chain says",
        dataclasses.replace(RESET_AT_BARE, hops=(at(2, HEALTHY, Controls(doh=(doh(PUBLIC),)), FIRST, BARE),)),
        "inconclusive", "control.failed", None,
    ),
    Case(
        "a redirect to a known warning page stays blocked",
        dataclasses.replace(WARNING, hops=(at(2, DENIED, Controls(doh=(doh(PUBLIC),)), FIRST, BARE),)),
        "blocked", "http.redirect", None,
    ),
    Case(
        "a hop of a hop: the deepest one decides, numbered in the input's chain",
        dataclasses.replace(
            RESET_AT_BARE,
            hops=(
                at(2, https(BARE, dns=(dns(PUBLIC),), tls=(tls(),), http=(http(
                    hop(301, url=BARE), hop(None, RST, "tls_handshake", url=THIRD)),)),
                   Controls(), FIRST, BARE),
                at(3, https(THIRD, dns=(dns(PUBLIC),), tls=(tls(RST, "tls_handshake"),)),
                   INNOCUOUS_OK, FIRST, BARE, THIRD),
            ),
        ),
        "blocked", "tls.reset", 3,
    ),
    Case(
        "a healthy input keeps its verdict whatever a hop says",
        dataclasses.replace(
            url(input=FIRST, scheme="http", dns=(dns(PUBLIC),), http=(http(hop(url=FIRST)),)),
            hops=(at(2, SNI_RESET, INNOCUOUS_OK, FIRST, BARE),),
        ),
        "accessible", "ok", None,
        Controls(helper=HelperReport(status=200, title="Example", body_length=22)),
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hops(case: Case) -> None:
    got = classify(case.ev, case.ctl, FP)
    assert (got.verdict, got.detail, got.evidence.get("hop")) == (
        case.verdict, case.detail, case.hop,
    )  # fmt: skip
    if case.ev.hops:
        assert [h["hop"] for h in got.evidence["later_hops"]] == [h.number for h in case.ev.hops]
    if case.hop is not None:
        assert got.reason.startswith(f"At hop {case.hop} ")
        assert got.evidence["chain_verdict"]["verdict"] != "blocked"


def _no_hops(ev: InputEvidence) -> InputEvidence:
    return dataclasses.replace(ev, hops=())


hops = st.lists(
    st.builds(HopEvidence, st.integers(2, 6), st.just(BARE), st.just((FIRST, BARE)),
              evidence, controls.map(lambda c: dataclasses.replace(c, vantage_ok=True))),
    max_size=2,
).map(tuple)  # fmt: skip


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(evidence, controls, hops)
def test_a_hop_never_unblocks_nor_blocks_on_its_own(
    ev: InputEvidence, ctl: Controls, later: tuple[HopEvidence, ...]
) -> None:
    own = classify(_no_hops(ev), ctl, FP)
    got = classify(dataclasses.replace(ev, hops=later), ctl, FP)
    assert got.reason.strip()
    if not ctl.vantage_ok:
        assert got == own  # rule 2 holds for every hop
    if own.verdict == "blocked":
        assert (got.verdict, got.layer, got.detail, got.rule) == (
            own.verdict, own.layer, own.detail, own.rule,
        )  # fmt: skip
    if got.verdict == "blocked" and own.verdict != "blocked":
        # Taken from a hop that its own measurement found blocked.
        assert any(classify(h.evidence, h.controls, FP).verdict == "blocked" for h in later)
        assert got.evidence["hop"] in {h.number for h in later}
