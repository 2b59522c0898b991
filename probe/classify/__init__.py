"""The classifier: observations and controls in, one verdict out. Pure: no I/O, no clock.

The rules are those of docs/architecture.md, applied layer by layer in the order a connection is
made (DNS, TCP, TLS, HTTP); the first layer that shows interference decides. Every "blocked"
names the control that succeeded where the probe failed (rule 1) or a sign that is evidence by
itself (a forged second DNS answer, a fingerprinted blockpage or interception root). Without
either the answer is "inconclusive", with the reason in ``detail`` and ``reason``. An input
found accessible (or too slow to finish) that also has throughput trials is then judged by
rule 7 (``throttle``), and one still accessible with SNI replay transfers by ``replay``.
An input whose redirect chain failed at a later hop measured that hop as an input of its own;
``hops`` joins that hop's verdict, by the same rules, with the input's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from measurements.addresses import Network
from probe.classify.common import inconclusive
from probe.classify.connection import classify_endpoint, classify_tls
from probe.classify.dns import classify_dns
from probe.classify.evidence import Controls, InputEvidence
from probe.classify.fingerprints import Fingerprints
from probe.classify.hops import through_hops
from probe.classify.http import classify_http
from probe.classify.replay import classify_replay
from probe.classify.throttle import classify_throughput
from probe.classify.verdict import Verdict


def classify(
    ev: InputEvidence,
    ctl: Controls,
    fingerprints: Fingerprints,
    routable: Iterable[Network] = (),
) -> Verdict:
    """The verdict for one input, its later redirect hops judged alike."""
    routable = tuple(routable)
    own = _classify(ev, ctl, fingerprints, routable)
    if not ctl.vantage_ok:
        return own  # rule 2: an offline vantage claims nothing, at any hop
    return through_hops(own, ev, lambda e, c: classify(e, c, fingerprints, routable))


def _classify(
    ev: InputEvidence, ctl: Controls, fingerprints: Fingerprints, routable: tuple[Network, ...]
) -> Verdict:
    """The verdict from the input's own observations and controls."""
    if not ctl.vantage_ok:
        return inconclusive(
            "vantage.offline",
            "vantage.offline",
            "No reference host answered: the vantage is offline or its link is broken.",
        )
    if ev.hostname is not None and ev.dns:
        verdict = classify_dns(ev, ctl, fingerprints, routable)
        if verdict is not None:
            return verdict
    if ev.not_contacted is not None:
        return inconclusive(
            "control.failed",
            "safety.not_contacted",
            f"Not contacted: {ev.not_contacted}.",
            not_contacted=ev.not_contacted,
        )
    if ev.kind == "endpoint":
        return classify_endpoint(ev, ctl)
    if ev.scheme == "https":
        verdict = classify_tls(ev, ctl, fingerprints)
        if verdict is not None:
            return verdict
    verdict = classify_http(ev, ctl, fingerprints)
    if ev.throughput and verdict.verdict == "accessible":
        verdict = classify_throughput(verdict, ev, ctl)  # rule 7: only what was reached is timed
    elif ev.throughput and verdict.rule == "http.slow_body":
        # A page too slow to finish was timed (probe.engine.throughput escalates it): a
        # throttle is what the trials find, and anything else leaves the page's verdict.
        timed = classify_throughput(verdict, ev, ctl)
        if timed.verdict == "throttled":
            verdict = timed
        else:
            facts = {**verdict.evidence, "throughput": timed.evidence.get("throughput")}
            verdict = dataclasses.replace(verdict, evidence=facts)
    if ev.replay and verdict.verdict == "accessible":
        verdict = classify_replay(verdict, ev, ctl)
    return verdict
