"""What every layer's rules share: verdict builders, failure labels, the DoH answers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from measurements.failures import Failure
from measurements.observations import DNSObservation
from probe.classify.evidence import Controls
from probe.classify.verdict import Verdict

TIMEOUT = Failure.GENERIC_TIMEOUT.value
RESET = Failure.CONNECTION_RESET.value
REFUSED = Failure.CONNECTION_REFUSED.value
EOF = Failure.EOF.value

# A resolver failure where DoH resolves: which label it earns.
DNS_FAILURE_DETAIL = {
    Failure.DNS_NXDOMAIN.value: "dns.nxdomain",
    Failure.DNS_NO_ANSWER.value: "dns.nxdomain",  # an empty NOERROR hides the name as well
    Failure.DNS_SERVFAIL.value: "dns.servfail",
    Failure.DNS_REFUSED.value: "dns.servfail",  # the resolver declines: a server-side refusal
}
TCP_DETAIL = {TIMEOUT: "tcp.timeout", RESET: "tcp.reset", REFUSED: "tcp.refused"}
TLS_DETAIL = {TIMEOUT: "tls.timeout", RESET: "tls.reset", EOF: "tls.eof"}
HTTP_DETAIL = {TIMEOUT: "http.timeout", RESET: "http.reset", EOF: "http.reset"}


def verdict(
    name: str, layer: str | None, detail: str, rule: str, reason: str, **ev: Any
) -> Verdict:
    """A verdict whose evidence is the keyword arguments."""
    return Verdict(name, layer, detail, rule, reason, ev)  # type: ignore[arg-type]


def inconclusive(detail: str, rule: str, reason: str, **ev: Any) -> Verdict:
    """An inconclusive verdict: no layer, the reason in detail."""
    return verdict("inconclusive", None, detail, rule, reason, **ev)


def first_ok(observations: Iterable[DNSObservation]) -> DNSObservation | None:
    """The first lookup that gave addresses."""
    return next((o for o in observations if o.failure is None and o.addresses), None)


def doh_addresses(ctl: Controls) -> tuple[str, ...]:
    """Every address the DoH controls gave, in order."""
    seen: dict[str, None] = {}
    for obs in ctl.doh:
        if obs.failure is None:
            seen.update(dict.fromkeys(obs.addresses))
    return tuple(seen)
