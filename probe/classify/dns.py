"""DNS rules (rule 4 of docs/architecture.md): the resolver under test against DNS-over-HTTPS."""

from __future__ import annotations

from typing import Any

from measurements.addresses import Network, is_bogon
from measurements.failures import Failure
from measurements.observations import DNSObservation
from probe.classify.common import (
    DNS_FAILURE_DETAIL,
    doh_addresses,
    first_ok,
    inconclusive,
    verdict,
)
from probe.classify.evidence import Controls, InputEvidence
from probe.classify.fingerprints import Fingerprints
from probe.classify.middlebox import ghost_name
from probe.classify.verdict import Verdict


def classify_dns(
    ev: InputEvidence, ctl: Controls, fp: Fingerprints, routable: tuple[Network, ...]
) -> Verdict | None:
    """A DNS verdict, or None when DNS gave usable addresses and the next layer must decide."""
    doh = doh_addresses(ctl)
    facts: dict[str, Any] = {
        "resolver_failures": [o.failure for o in ev.dns],
        "doh_addresses": list(doh),
    }
    injected = _injection(ev, facts)
    if injected is not None:
        return injected
    ok = first_ok(ev.dns)
    if ok is None:
        failure = ev.dns[-1].failure or Failure.DNS_NO_ANSWER.value
        facts["failure"] = failure
        if doh:
            return _failure_vs_doh(failure, doh, facts)
        return _failure_without_doh(failure, ctl, facts)
    facts["resolver_addresses"] = list(ok.addresses)
    sinkhole = _sinkhole(ok, fp, facts)
    if sinkhole is not None:
        return sinkhole
    bogon = _bogon(ok, doh, routable, facts)
    if bogon is not None or doh:
        return bogon
    return ghost_name(ev, ok, ctl, fp, facts)


def _injection(ev: InputEvidence, facts: dict[str, Any]) -> Verdict | None:
    """Two different answers to one query: one was forged on the path."""
    for obs in ev.dns:
        distinct = {frozenset(r.addresses) for r in obs.responses if r.addresses}
        if len(distinct) > 1:
            return verdict(
                "blocked",
                "dns",
                "dns.injection",
                "dns.injection",
                "Two different answers arrived for one query: one was forged on the path.",
                answers=[list(r.addresses) for r in obs.responses],
                **facts,
            )
    return None


def _failure_vs_doh(failure: str, doh: tuple[str, ...], facts: dict[str, Any]) -> Verdict:
    """The resolver failed where DoH resolved: blocked when the failure is one that hides a name."""
    detail = DNS_FAILURE_DETAIL.get(failure)
    if detail is not None:
        return verdict(
            "blocked",
            "dns",
            detail,
            "dns.failure_vs_doh",
            f"The resolver answered {failure} on every attempt while DNS-over-HTTPS "
            f"resolved the name to {', '.join(doh)}.",
            **facts,
        )
    return inconclusive(
        "control.failed",
        "dns.unlabelled_failure",
        f"The resolver failed ({failure}) while DNS-over-HTTPS resolved the name; "
        "this failure alone does not show blocking (it may be a flaky resolver).",
        **facts,
    )


def _failure_without_doh(failure: str, ctl: Controls, facts: dict[str, Any]) -> Verdict:
    """The resolver failed and DoH gave no address: a name gone, or no control."""
    doh_failures = sorted({o.failure for o in ctl.doh if o.failure})
    if Failure.DNS_NXDOMAIN.value in doh_failures:
        return inconclusive(
            "site.down",
            "dns.name_gone",
            "Neither the resolver nor DNS-over-HTTPS knows the name: it does not exist.",
            **facts,
        )
    return inconclusive(
        "control.failed",
        "dns.no_control",
        f"The resolver failed ({failure}) and no DNS-over-HTTPS control answered.",
        doh_failures=doh_failures,
        **facts,
    )


def _sinkhole(ok: DNSObservation, fp: Fingerprints, facts: dict[str, Any]) -> Verdict | None:
    """The resolver answered with a known blockpage address."""
    sinkhole = fp.dns_match(ok.addresses)
    if sinkhole is None:
        return None
    return verdict(
        "blocked",
        "dns",
        "dns.blockpage_ip",
        "dns.fingerprint",
        f"The resolver answered with a known blockpage address ({sinkhole}).",
        fingerprint=sinkhole,
        **facts,
    )


def _bogon(
    ok: DNSObservation, doh: tuple[str, ...], routable: tuple[Network, ...], facts: dict[str, Any]
) -> Verdict | None:
    """Only non-public addresses: blocked when DoH gave a public one."""
    if not all(is_bogon(ip, routable) for ip in ok.addresses):
        return None
    if doh and not all(is_bogon(ip, routable) for ip in doh):
        return verdict(
            "blocked",
            "dns",
            "dns.bogon",
            "dns.bogon",
            f"The resolver answered {', '.join(ok.addresses)}, addresses no public server "
            f"can have, while DNS-over-HTTPS answered {', '.join(doh)}.",
            **facts,
        )
    return inconclusive(
        "control.failed",
        "dns.bogon_no_control",
        "The name resolves to non-public addresses and no control contradicts it.",
        **facts,
    )
