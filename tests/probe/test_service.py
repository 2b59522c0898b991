"""The service rule: a service's verdict, detail and scope (total or partial) from its inputs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.classify.service import (
    CONCLUSIVE,
    INTERFERED,
    ServiceSummary,
    scope_text,
    summarize_rows,
)

_LAYER = {"dns.nxdomain": "dns", "tcp.timeout": "tcp", "throttle.sni": "tls", "ok": None}

CASES = [
    # (name, input verdicts as (verdict, detail), verdict, detail, scope, affected, conclusive)
    ("every input blocked", [("blocked", "dns.nxdomain")] * 3,
     "blocked", "dns.nxdomain", "all", 3, 3),
    ("2 of 32 endpoints blocked",
     [("blocked", "tcp.timeout")] * 2 + [("accessible", "ok")] * 30,
     "blocked", "tcp.timeout", "partial", 2, 32),
    ("inconclusive inputs do not count against all",
     [("blocked", "dns.nxdomain"), ("inconclusive", "control.failed")],
     "blocked", "dns.nxdomain", "all", 1, 1),
    ("blocked and throttled together are all",
     [("throttled", "throttle.sni"), ("blocked", "dns.nxdomain")],
     "blocked", "dns.nxdomain", "all", 2, 2),
    ("throttled beside an accessible input is partial",
     [("throttled", "throttle.sni"), ("accessible", "ok")],
     "throttled", "throttle.sni", "partial", 1, 2),
    ("nothing blocked: no scope", [("accessible", "ok")] * 4, "accessible", "ok", None, 0, 4),
    ("nothing conclusive: no scope", [("inconclusive", "site.down")] * 2,
     "inconclusive", "site.down", None, 0, 0),
    ("the first detail wins a tie",
     [("blocked", "tcp.timeout"), ("blocked", "dns.nxdomain"), ("accessible", "ok")],
     "blocked", "tcp.timeout", "partial", 2, 3),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_service_rule(case: tuple[object, ...]) -> None:
    _, inputs, verdict, detail, scope, affected, conclusive = case
    assert isinstance(inputs, list)
    [got] = summarize_rows(("svc", v, d, _LAYER.get(d)) for v, d in inputs)
    assert (got.verdict, got.detail, got.scope) == (verdict, detail, scope)
    assert (got.affected, got.conclusive, got.inputs) == (affected, conclusive, len(inputs))
    assert got.layer == _LAYER.get(str(detail))


def test_services_keep_first_seen_order_and_the_text_says_how_many() -> None:
    rows = [("b", "blocked", "tcp.timeout", "tcp"), ("a", "accessible", "ok", None)]
    rows += [("b", "accessible", "ok", None)]
    got = summarize_rows(rows)
    assert [s.service for s in got] == ["b", "a"]
    assert [scope_text(s) for s in got] == ["partial (1 of 2)", ""]


_VERDICTS = st.sampled_from(["accessible", "blocked", "throttled", "inconclusive"])
_DETAILS = st.sampled_from(["ok", "dns.nxdomain", "tcp.timeout", "site.down"])


@given(st.lists(st.tuples(_VERDICTS, _DETAILS), min_size=1, max_size=40))
def test_scope_is_all_exactly_when_every_conclusive_input_is_blocked(
    inputs: list[tuple[str, str]],
) -> None:
    [got] = summarize_rows(("svc", v, d, None) for v, d in inputs)
    blocked = sum(v in INTERFERED for v, _ in inputs)
    conclusive = sum(v in CONCLUSIVE for v, _ in inputs)
    assert (got.scope == "all") == (blocked == conclusive > 0)
    assert (got.scope is None) == (blocked == 0)
    assert (got.affected, got.conclusive) == (blocked, conclusive)
    assert isinstance(got, ServiceSummary) and got.agreeing == got.counts[got.verdict]
