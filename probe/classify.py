"""The classifier: observations and controls in, one verdict out. Pure: no I/O, no clock.

The rules are DESIGN.md's, applied layer by layer in the order a connection is made (DNS,
TCP, TLS, HTTP); the first layer that shows interference decides. Every "blocked" names the
control that succeeded where the probe failed (rule 1) or a sign that is evidence by itself (a
forged second DNS answer, a fingerprinted blockpage or interception root). Without either the
answer is "inconclusive", with the reason in ``detail`` and ``reason``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from measurements.addresses import Network, is_bogon
from measurements.failures import Failure
from measurements.observations import DNSObservation, HTTPHop, HTTPObservation, TLSObservation
from probe.evidence import Controls, InputEvidence
from probe.fingerprints import Fingerprints
from probe.verdict import Verdict

_TIMEOUT = Failure.GENERIC_TIMEOUT.value
_RESET = Failure.CONNECTION_RESET.value
_REFUSED = Failure.CONNECTION_REFUSED.value
_EOF = Failure.EOF.value

# A resolver failure where DoH resolves: which label it earns.
_DNS_FAILURE_DETAIL = {
    Failure.DNS_NXDOMAIN.value: "dns.nxdomain",
    Failure.DNS_NO_ANSWER.value: "dns.nxdomain",  # an empty NOERROR hides the name as well
    Failure.DNS_SERVFAIL.value: "dns.servfail",
    Failure.DNS_REFUSED.value: "dns.servfail",  # the resolver declines: a server-side refusal
}
_TCP_DETAIL = {_TIMEOUT: "tcp.timeout", _RESET: "tcp.reset", _REFUSED: "tcp.refused"}
_TLS_DETAIL = {_TIMEOUT: "tls.timeout", _RESET: "tls.reset", _EOF: "tls.eof"}
_HTTP_DETAIL = {_TIMEOUT: "http.timeout", _RESET: "http.reset", _EOF: "http.reset"}


def _v(verdict: str, layer: str | None, detail: str, rule: str, reason: str, **ev: Any) -> Verdict:
    return Verdict(verdict, layer, detail, rule, reason, ev)  # type: ignore[arg-type]


def _inconclusive(detail: str, rule: str, reason: str, **ev: Any) -> Verdict:
    return _v("inconclusive", None, detail, rule, reason, **ev)


def classify(
    ev: InputEvidence,
    ctl: Controls,
    fingerprints: Fingerprints,
    routable: Iterable[Network] = (),
) -> Verdict:
    """The verdict for one input."""
    routable = tuple(routable)
    if not ctl.vantage_ok:
        return _inconclusive(
            "vantage.offline",
            "vantage.offline",
            "No reference host answered: the vantage is offline or its link is broken.",
        )
    if ev.hostname is not None and ev.dns:
        verdict = _classify_dns(ev, ctl, fingerprints, routable)
        if verdict is not None:
            return verdict
    if ev.not_contacted is not None:
        return _inconclusive(
            "control.failed",
            "safety.not_contacted",
            f"Not contacted: {ev.not_contacted}.",
            not_contacted=ev.not_contacted,
        )
    if ev.kind == "endpoint":
        return _classify_endpoint(ev, ctl)
    if ev.scheme == "https":
        verdict = _classify_tls(ev, ctl, fingerprints)
        if verdict is not None:
            return verdict
    return _classify_http(ev, ctl, fingerprints)


# --- DNS (rule 4) -----------------------------------------------------------------------


def _first_ok(observations: Iterable[DNSObservation]) -> DNSObservation | None:
    return next((o for o in observations if o.failure is None and o.addresses), None)


def _doh_addresses(ctl: Controls) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for obs in ctl.doh:
        if obs.failure is None:
            seen.update(dict.fromkeys(obs.addresses))
    return tuple(seen)


def _classify_dns(
    ev: InputEvidence, ctl: Controls, fp: Fingerprints, routable: tuple[Network, ...]
) -> Verdict | None:
    """A DNS verdict, or None when DNS gave usable addresses and the next layer must decide."""
    doh = _doh_addresses(ctl)
    doh_failures = sorted({o.failure for o in ctl.doh if o.failure})
    facts: dict[str, Any] = {
        "resolver_failures": [o.failure for o in ev.dns],
        "doh_addresses": list(doh),
    }
    for obs in ev.dns:
        distinct = {frozenset(r.addresses) for r in obs.responses if r.addresses}
        if len(distinct) > 1:
            return _v(
                "blocked",
                "dns",
                "dns.injection",
                "dns.injection",
                "Two different answers arrived for one query: one was forged on the path.",
                answers=[list(r.addresses) for r in obs.responses],
                **facts,
            )
    ok = _first_ok(ev.dns)
    if ok is None:
        failure = ev.dns[-1].failure or Failure.DNS_NO_ANSWER.value
        facts["failure"] = failure
        if doh:
            detail = _DNS_FAILURE_DETAIL.get(failure)
            if detail is not None:
                return _v(
                    "blocked",
                    "dns",
                    detail,
                    "dns.failure_vs_doh",
                    f"The resolver answered {failure} on every attempt while DNS-over-HTTPS "
                    f"resolved the name to {', '.join(doh)}.",
                    **facts,
                )
            return _inconclusive(
                "control.failed",
                "dns.unlabelled_failure",
                f"The resolver failed ({failure}) while DNS-over-HTTPS resolved the name; "
                "this failure alone does not show blocking (it may be a flaky resolver).",
                **facts,
            )
        if Failure.DNS_NXDOMAIN.value in doh_failures:
            return _inconclusive(
                "site.down",
                "dns.name_gone",
                "Neither the resolver nor DNS-over-HTTPS knows the name: it does not exist.",
                **facts,
            )
        return _inconclusive(
            "control.failed",
            "dns.no_control",
            f"The resolver failed ({failure}) and no DNS-over-HTTPS control answered.",
            doh_failures=doh_failures,
            **facts,
        )
    facts["resolver_addresses"] = list(ok.addresses)
    sinkhole = fp.dns_match(ok.addresses)
    if sinkhole is not None:
        return _v(
            "blocked",
            "dns",
            "dns.blockpage_ip",
            "dns.fingerprint",
            f"The resolver answered with a known blockpage address ({sinkhole}).",
            fingerprint=sinkhole,
            **facts,
        )
    if all(is_bogon(ip, routable) for ip in ok.addresses):
        if doh and not all(is_bogon(ip, routable) for ip in doh):
            return _v(
                "blocked",
                "dns",
                "dns.bogon",
                "dns.bogon",
                f"The resolver answered {', '.join(ok.addresses)}, addresses no public server "
                f"can have, while DNS-over-HTTPS answered {', '.join(doh)}.",
                **facts,
            )
        return _inconclusive(
            "control.failed",
            "dns.bogon_no_control",
            "The name resolves to non-public addresses and no control contradicts it.",
            **facts,
        )
    return None


# --- TCP (bare endpoints and the connect step of URLs) -----------------------------------


def _tcp_failure_verdict(failure: str, ctl: Controls, step: str, **facts: Any) -> Verdict:
    """A connect that failed on every attempt: blocked only if a control got through."""
    helper = ctl.helper
    if helper is not None and helper.tcp_ok is not None:
        if helper.tcp_ok and failure in _TCP_DETAIL:
            return _v(
                "blocked",
                "tcp",
                _TCP_DETAIL[failure],
                "tcp.helper",
                f"{step} failed ({failure}) on every attempt while the control helper connected "
                "to the same address.",
                failure=failure,
                **facts,
            )
        if not helper.tcp_ok:
            return _inconclusive(
                "site.down",
                "tcp.down_everywhere",
                f"{step} failed ({failure}) and the control helper could not connect either.",
                failure=failure,
                **facts,
            )
    return _inconclusive(
        "control.failed",
        "tcp.no_control",
        f"{step} failed ({failure}) on every attempt; no control reached the address, so a "
        "server that is down cannot be told from one that is blocked.",
        failure=failure,
        **facts,
    )


def _classify_endpoint(ev: InputEvidence, ctl: Controls) -> Verdict:
    if not ev.tcp:
        return _inconclusive(
            "control.failed", "tcp.not_measured", "The endpoint was not measured in time."
        )
    ok = next((o for o in ev.tcp if o.failure is None), None)
    if ok is not None:
        return _v(
            "accessible",
            None,
            "ok",
            "tcp.connected",
            f"Connected to {ok.ip}:{ok.port} in {ok.connect_ms:.0f} ms.",
            attempts=len(ev.tcp),
        )
    last = ev.tcp[-1]
    return _tcp_failure_verdict(
        last.failure or "unknown_failure",
        ctl,
        f"Connecting to {last.ip}:{last.port}",
        attempts=len(ev.tcp),
    )


# --- TLS (rule 5, and rule 4's certificate check) ----------------------------------------


def _classify_tls(ev: InputEvidence, ctl: Controls, fp: Fingerprints) -> Verdict | None:
    if not ev.tls:
        if ev.deadline_exceeded:
            return _inconclusive(
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
            return _tcp_failure_verdict(failure, ctl, f"Connecting to {last.ip}", **facts)
        return _tls_handshake_failure(last, failure, ctl, facts)
    if ok.cert_valid is False:
        return _invalid_certificate(ev, ok, ctl, fp)
    return None


def _tls_handshake_failure(
    last: TLSObservation, failure: str, ctl: Controls, facts: dict[str, Any]
) -> Verdict:
    innocuous = next((o for o in ctl.tls_innocuous if o.failure is None), None)
    facts["innocuous_sni"] = [o.sni for o in ctl.tls_innocuous][:1]
    facts["innocuous_failures"] = [o.failure for o in ctl.tls_innocuous]
    if innocuous is not None and failure in _TLS_DETAIL:
        return _v(
            "blocked",
            "tls",
            _TLS_DETAIL[failure],
            "tls.sni_filter",
            f"The TLS handshake with SNI {last.sni} failed ({failure}) on every attempt while "
            f"the same address completed one with SNI {innocuous.sni}.",
            **facts,
        )
    if innocuous is not None:
        return _inconclusive(
            "control.failed",
            "tls.refused_name",
            f"The server declined the handshake for {last.sni} ({failure}) but accepts other "
            "names: it may simply not serve this one.",
            **facts,
        )
    return _inconclusive(
        "control.failed",
        "tls.no_control",
        f"The TLS handshake failed ({failure}) and the innocuous-SNI control failed too.",
        **facts,
    )


def _steered(ev: InputEvidence, ctl: Controls) -> Verdict | None:
    """Resolver sent us elsewhere than DoH, and DoH's address works: DNS did the blocking."""
    ok = _first_ok(ev.dns)
    doh = _doh_addresses(ctl)
    if ok is None or not doh or set(ok.addresses) & set(doh):
        return None
    good = next(
        (o for o in ctl.tls_at_control_addresses if o.failure is None and o.cert_valid), None
    )
    if good is None:
        return None
    return _v(
        "blocked",
        "dns",
        "dns.blockpage_ip",
        "dns.steered",
        f"The resolver's address {ok.addresses[0]} does not serve the site while DoH's address "
        f"{good.ip} does, with a certificate valid for the name.",
        resolver_addresses=list(ok.addresses),
        doh_addresses=list(doh),
    )


def _invalid_certificate(
    ev: InputEvidence, ok: TLSObservation, ctl: Controls, fp: Fingerprints
) -> Verdict:
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
        root = fp.issuer_match(issuer)
        if root is not None:
            return _v(
                "blocked",
                "tls",
                "tls.mitm",
                "tls.mitm_fingerprint",
                f"The chain was issued by a known interception root ({issuer}).",
                fingerprint=root,
                **facts,
            )
        if ctl.helper is not None and ctl.helper.tls_valid:
            return _v(
                "blocked",
                "tls",
                "tls.mitm",
                "tls.mitm_helper",
                f"The chain here does not validate (issuer {issuer}) while the control helper "
                "saw a valid one for the same name.",
                **facts,
            )
    return _inconclusive(
        "control.failed",
        "tls.invalid_no_control",
        f"The certificate does not validate ({ok.cert_failure}, issuer {issuer}); no control "
        "saw the site's genuine chain, so a misconfigured site cannot be ruled out.",
        **facts,
    )


# --- HTTP (rule 6) ----------------------------------------------------------------------


def _succeeded(obs: HTTPObservation) -> bool:
    hop = obs.final
    return hop.failure is None and hop.refused is None and hop.status is not None


def _classify_http(ev: InputEvidence, ctl: Controls, fp: Fingerprints) -> Verdict:
    if not ev.http:
        return _inconclusive(
            "control.failed",
            "deadline" if ev.deadline_exceeded else "http.not_measured",
            "The page was not fetched before the per-target deadline.",
        )
    ok = next((o for o in ev.http if _succeeded(o)), None)
    if ok is None:
        return _http_failure(ev, ctl, fp)
    for hop in ok.hops:
        name = fp.http_match(hop)
        if name is not None:
            detail = "http.redirect" if hop.status in range(300, 400) else "http.blockpage"
            return _v(
                "blocked",
                "http",
                detail,
                "http.fingerprint",
                f"{hop.url} returned a known blockpage ({name}).",
                fingerprint=name,
                status=hop.status,
                hops=[h.url for h in ok.hops],
            )
    # Over validated HTTPS the page came from the site itself: a difference is the site's own
    # doing (localisation, A/B tests), so only plain HTTP is compared with the helper's page.
    diff = _helper_diff(ok, ctl) if ev.scheme == "http" else None
    if diff is not None:
        return diff
    final = ok.final
    return _v(
        "accessible",
        None,
        "ok",
        "http.ok",
        f"{final.url} answered {final.status} ({final.body_length} bytes).",
        status=final.status,
        title=final.title,
        hops=[h.url for h in ok.hops],
    )


def _http_failure(ev: InputEvidence, ctl: Controls, fp: Fingerprints) -> Verdict:
    last = ev.http[-1]
    hop: HTTPHop = last.final
    facts: dict[str, Any] = {"url": hop.url, "operation": hop.operation, "attempts": len(ev.http)}
    if hop.refused is not None:
        for earlier in last.hops:
            name = fp.http_match(earlier)
            if name is not None:
                return _v(
                    "blocked",
                    "http",
                    "http.redirect",
                    "http.fingerprint",
                    f"{earlier.url} redirected to a known blockpage ({name}).",
                    fingerprint=name,
                    **facts,
                )
        return _inconclusive(
            "control.failed",
            "safety.not_contacted",
            f"A redirect led to {hop.url}, which was not contacted: {hop.refused}.",
            **facts,
        )
    failure = hop.failure or "unknown_failure"
    facts["failure"] = failure
    if hop.operation == "connect":
        return _tcp_failure_verdict(failure, ctl, f"Connecting to {hop.ip}", **facts)
    if hop.operation in ("http_request", "http_body") and failure in _HTTP_DETAIL:
        control = next((o for o in ctl.http_innocuous if o.final.status is not None), None)
        if control is not None:
            return _v(
                "blocked",
                "http",
                _HTTP_DETAIL[failure],
                "http.innocuous_host",
                f"The request for {hop.url} failed ({failure}) after it was sent, on every "
                f"attempt, while the same address answered a request for another name "
                f"({control.final.status}).",
                **facts,
            )
    return _inconclusive(
        "control.failed",
        "http.no_control",
        f"Fetching {hop.url} failed ({failure}, during {hop.operation}) and no control "
        "showed the address working for other requests.",
        **facts,
    )


def _helper_diff(ok: HTTPObservation, ctl: Controls) -> Verdict | None:
    """Rule 6's comparison with the control helper's page (only when a helper answered)."""
    helper = ctl.helper
    if helper is None or helper.status is None:
        return None
    final = ok.final
    hosts = {_host(h.url) for h in ok.hops}
    if helper.final_host and _host(final.url) != helper.final_host and len(hosts) > 1:
        return _v(
            "blocked",
            "http",
            "http.redirect",
            "http.helper_redirect",
            f"Redirected to {_host(final.url)}, a host the control helper never saw.",
            final_url=final.url,
            helper_final_host=helper.final_host,
        )
    # As the best-known probe does: a length far from the helper's only counts with a title
    # that differs too, since localised pages change titles but rarely their size.
    ratio = (
        min(final.body_length, helper.body_length) / max(final.body_length, helper.body_length)
        if final.body_length and helper.body_length
        else 1.0
    )
    status_differs = final.status != helper.status
    if status_differs or (ratio < 0.7 and final.title != helper.title):
        return _v(
            "blocked",
            "http",
            "http.diff",
            "http.helper_diff",
            "The page differs from the control helper's: "
            + ("another status." if status_differs else "another title and length."),
            status=final.status,
            helper_status=helper.status,
            title=final.title,
            helper_title=helper.title,
            body_length=final.body_length,
            helper_body_length=helper.body_length,
        )
    return None


def _host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0].split(":", 1)[0].lower()
