"""Connection rules: TCP (with the helper) and TLS (rules 4 and 5 of docs/architecture.md)."""

from __future__ import annotations

from typing import Any

from measurements.failures import Failure
from measurements.observations import TLSObservation
from probe.classify.common import (
    TCP_DETAIL,
    TLS_DETAIL,
    doh_addresses,
    first_ok,
    inconclusive,
    verdict,
)
from probe.classify.evidence import Controls, InputEvidence
from probe.classify.fingerprints import Fingerprints, InterceptionMatch
from probe.classify.verdict import Verdict


def tcp_failure_verdict(failure: str, ctl: Controls, step: str, **facts: Any) -> Verdict:
    """A connect that failed on every attempt: blocked only if a control got through."""
    helper = ctl.helper
    if helper is not None and helper.tcp_ok is not None:
        if helper.tcp_ok and failure in TCP_DETAIL:
            return verdict(
                "blocked",
                "tcp",
                TCP_DETAIL[failure],
                "tcp.helper",
                f"{step} failed ({failure}) on every attempt while the control helper connected "
                "to the same address.",
                failure=failure,
                **facts,
            )
        if not helper.tcp_ok:
            return inconclusive(
                "site.down",
                "tcp.down_everywhere",
                f"{step} failed ({failure}) and the control helper could not connect either.",
                failure=failure,
                **facts,
            )
    return inconclusive(
        "control.failed",
        "tcp.no_control",
        f"{step} failed ({failure}) on every attempt; no control reached the address, so a "
        "server that is down cannot be told from one that is blocked.",
        failure=failure,
        **facts,
    )


def classify_endpoint(ev: InputEvidence, ctl: Controls) -> Verdict:
    if not ev.tcp:
        return inconclusive(
            "control.failed", "tcp.not_measured", "The endpoint was not measured in time."
        )
    ok = next((o for o in ev.tcp if o.failure is None), None)
    if ok is not None:
        return verdict(
            "accessible",
            None,
            "ok",
            "tcp.connected",
            f"Connected to {ok.ip}:{ok.port}"
            + (f" in {ok.connect_ms:.0f} ms." if ok.connect_ms is not None else "."),
            attempts=len(ev.tcp),
        )
    last = ev.tcp[-1]
    return tcp_failure_verdict(
        last.failure or "unknown_failure",
        ctl,
        f"Connecting to {last.ip}:{last.port}",
        attempts=len(ev.tcp),
    )


def classify_tls(ev: InputEvidence, ctl: Controls, fp: Fingerprints) -> Verdict | None:
    if not ev.tls:
        if ev.deadline_exceeded:
            return inconclusive(
                "control.failed", "deadline", "The per-target deadline ran out before TLS."
            )
        return None
    ok = next((o for o in ev.tls if o.failure is None), None)
    if ok is None:
        last = ev.tls[-1]
        failure = last.failure or "unknown_failure"
        facts: dict[str, Any] = {"address": last.ip, "attempts": len(ev.tls)}
        if last.operation == "connect":
            steered = _steered(ev, ctl)
            if steered is not None:
                return steered
            return tcp_failure_verdict(failure, ctl, f"Connecting to {last.ip}", **facts)
        return _tls_handshake_failure(last, failure, ctl, facts)
    known = fp.interception_match(ok.chain)
    if known is not None:  # rule 5: by itself, and whatever the trust store said
        return _known_interception(ok, known, ctl)
    if ok.cert_valid is False:
        return _invalid_certificate(ev, ok, ctl)
    return None


_PLACES = {"certificate": "is", "key": "has the key of", "subject": "is", "issuer": "was issued by"}


def _known_interception(ok: TLSObservation, known: InterceptionMatch, ctl: Controls) -> Verdict:
    """A presented chain that shows a known interception CA: tls.mitm, no control needed,
    unless a commercial CA's interception is local to the vantage (on every host)."""
    place = "the leaf" if known.position == 0 else f"certificate {known.position} (0: the leaf)"
    accepted = (
        " The local trust store accepted the chain: its root was installed here, which does "
        "not make it the site's."
        if ok.cert_valid
        else ""
    )
    seen = [r.url for r in ctl.reference_tls if r.interception == known.fingerprint]
    compared = [r for r in ctl.reference_tls if r.issuer is not None]
    shown = (
        f"The presented chain shows the known {known.kind} interception CA "
        f"{known.fingerprint}: {place} ({known.certificate.subject}) {_PLACES[known.how]} it."
    )
    facts = _interception_facts(ok, known, seen)
    if known.kind == "commercial" and (seen or not compared):
        # Antivirus or a company's proxy forges every site's chain: a censor's aim cannot
        # be told from it unless a reference host in the same sweep was spared.
        where = (
            f"the vantage check's reference hosts ({', '.join(seen)}) were intercepted by it "
            "too: the interception is local to this machine or network (antivirus or a "
            "company's proxy)"
            if seen
            else "no reference host presented a chain in the vantage check, so interception "
            "local to this machine or network (antivirus or a company's proxy) cannot be "
            "ruled out"
        )
        return inconclusive(
            "control.failed",
            "tls.mitm_local" if seen else "tls.mitm_unreferenced",
            f"{shown} It is a product's CA, and {where}; it cannot tell censorship.{accepted}",
            **facts,
        )
    everywhere = (
        f" It was seen on the reference hosts too ({', '.join(seen)}): every host is "
        "intercepted here, which makes a state's interception no less a censor's."
        if seen
        else ""
    )
    spared = (
        " The vantage check's reference hosts were not intercepted by it: it was aimed at "
        "this name."
        if known.kind == "commercial"
        else ""
    )
    return verdict(
        "blocked", "tls", "tls.mitm", "tls.mitm_fingerprint",
        f"{shown}{spared}{everywhere}{accepted}", **facts,
    )  # fmt: skip


def _interception_facts(
    ok: TLSObservation, known: InterceptionMatch, seen: list[str]
) -> dict[str, Any]:
    """The evidence of a known interception CA: which, where in the chain, and the chain."""
    return {
        "fingerprint": known.fingerprint,
        "kind": known.kind,
        "source": known.source,
        "position": known.position,
        "matched_by": known.how,
        "certificate": {
            "subject": known.certificate.subject,
            "issuer": known.certificate.issuer,
            "sha256": known.certificate.sha256,
            "spki_sha256": known.certificate.spki_sha256,
        },
        "seen_at_references": seen,
        "address": ok.ip,
        "cert_valid": ok.cert_valid,
        "cert_failure": ok.cert_failure,
        "issuer": ok.chain[0].issuer if ok.chain else None,
        "leaf_sha256": ok.chain[0].sha256 if ok.chain else None,
        "chain_pem": chain_pem(ok),
    }


def chain_pem(ok: TLSObservation) -> list[str]:
    """The presented chain in PEM, leaf first, for a reader to re-check a tls.mitm verdict."""
    # Only tls.mitm verdicts carry it: stored observations keep each certificate's hashes.
    return [c.pem for c in ok.chain]


def _tls_handshake_failure(
    last: TLSObservation, failure: str, ctl: Controls, facts: dict[str, Any]
) -> Verdict:
    innocuous = next((o for o in ctl.tls_innocuous if o.failure is None), None)
    facts["innocuous_sni"] = [o.sni for o in ctl.tls_innocuous][:1]
    facts["innocuous_failures"] = [o.failure for o in ctl.tls_innocuous]
    if innocuous is not None and failure in TLS_DETAIL:
        return verdict(
            "blocked",
            "tls",
            TLS_DETAIL[failure],
            "tls.sni_filter",
            f"The TLS handshake with SNI {last.sni} failed ({failure}) on every attempt while "
            f"the same address completed one with SNI {innocuous.sni}.",
            **facts,
        )
    if innocuous is not None:
        return inconclusive(
            "control.failed",
            "tls.refused_name",
            f"The server declined the handshake for {last.sni} ({failure}) but accepts other "
            "names: it may simply not serve this one.",
            **facts,
        )
    return inconclusive(
        "control.failed",
        "tls.no_control",
        f"The TLS handshake failed ({failure}) and the innocuous-SNI control failed too.",
        **facts,
    )


def _steered(ev: InputEvidence, ctl: Controls) -> Verdict | None:
    """Resolver sent us elsewhere than DoH, and DoH's address works: DNS did the blocking."""
    ok = first_ok(ev.dns)
    doh = doh_addresses(ctl)
    if ok is None or not doh or set(ok.addresses) & set(doh):
        return None
    good = next(
        (o for o in ctl.tls_at_control_addresses if o.failure is None and o.cert_valid), None
    )
    if good is None:
        return None
    return verdict(
        "blocked",
        "dns",
        "dns.blockpage_ip",
        "dns.steered",
        f"The resolver's address {ok.addresses[0]} does not serve the site while DoH's address "
        f"{good.ip} does, with a certificate valid for the name.",
        resolver_addresses=list(ok.addresses),
        doh_addresses=list(doh),
    )


def _invalid_certificate(ev: InputEvidence, ok: TLSObservation, ctl: Controls) -> Verdict:
    issuer = ok.chain[0].issuer if ok.chain else None
    facts: dict[str, Any] = {
        "address": ok.ip,
        "cert_failure": ok.cert_failure,
        "issuer": issuer,
        "leaf_sha256": ok.chain[0].sha256 if ok.chain else None,
    }
    steered = _steered(ev, ctl)
    if steered is not None:
        return steered
    if ok.cert_failure == Failure.SSL_UNKNOWN_AUTHORITY.value and issuer:
        if ctl.helper is not None and ctl.helper.tls_valid:
            return verdict(
                "blocked",
                "tls",
                "tls.mitm",
                "tls.mitm_helper",
                f"The chain here does not validate (issuer {issuer}) while the control helper "
                "saw a valid one for the same name.",
                **facts,
                chain_pem=chain_pem(ok),
            )
    return inconclusive(
        "control.failed",
        "tls.invalid_no_control",
        f"The certificate does not validate ({ok.cert_failure}, issuer {issuer}); no control "
        "saw the site's genuine chain, so a misconfigured site cannot be ruled out.",
        **facts,
    )
