"""DNS answers that lead to a middlebox (rule 4 of docs/architecture.md): what the address
the resolver gave serves, held against what the name's own server would.

- Steered plain HTTP: the resolver's answer shares nothing with DoH's, and the page there
  is missing, a blockpage, or unlike the page at DoH's address (status, title, length:
  ``pagediff``). Over HTTPS the certificate does this job (``connection._steered``).
- Ghost names: the resolver answers a name DoH says does not exist. A name that exists only
  on the local network (split-horizon DNS) looks the same from DoH, so DoH's NXDOMAIN is
  never enough: the address must provably serve something other than the name (a
  certificate that does not name it, a fingerprinted blockpage, or the same page whatever
  name is asked), and the resolver must not be one that answers every missing name (the
  made-up-name control: NXDOMAIN rewriting for ads or search is not aimed at this name).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from measurements.failures import Failure
from measurements.observations import Certificate, DNSObservation, HTTPObservation
from probe.classify.common import doh_addresses, first_ok, inconclusive, verdict
from probe.classify.controls import http_failed
from probe.classify.evidence import Controls, InputEvidence
from probe.classify.fingerprints import Fingerprints
from probe.classify.pagediff import Page, differs, same_page
from probe.classify.verdict import Verdict

_NX = Failure.DNS_NXDOMAIN.value
# A resolver's word that a name has no address (what a made-up name must get).
_NO_ADDRESS = (_NX, Failure.DNS_NO_ANSWER.value)


def doh_says_gone(doh: Iterable[DNSObservation]) -> bool:
    """Every DoH resolver that answered said NXDOMAIN (at least one did)."""
    answers = [o for o in doh if o.failure in _NO_ADDRESS or o.addresses]
    return bool(answers) and all(o.failure == _NX for o in answers)


def _page(obs: HTTPObservation) -> dict[str, Any]:
    hop = obs.hops[0]
    return {
        "url": hop.url, "address": hop.ip, "status": hop.status, "title": hop.title,
        "body_length": hop.body_length,
    }  # fmt: skip


def steered_http(
    ev: InputEvidence, ctl: Controls, fp: Fingerprints, found: Verdict
) -> Verdict | None:
    """Plain HTTP at the resolver's address against the page at DoH's address: DNS's doing?

    Plain HTTP has no certificate to prove which server answered, so the proof is the page
    fetched at DoH's address: it answered, it is no known blockpage, and the resolver's
    address gave no page, a blockpage, or another page than it (``found`` is the HTTP rules'
    verdict on the resolver's page).
    """
    ok = first_ok(ev.dns)
    doh = doh_addresses(ctl)
    if ok is None or not doh or set(ok.addresses) & set(doh):
        return None
    good = next(
        (
            o
            for o in ctl.http_at_control_addresses
            if not http_failed(o) and not any(fp.http_match(h) for h in o.hops)
        ),
        None,
    )
    if good is None:
        if found.verdict != "accessible":
            return None
        # Without a certificate, only the page at DoH's address vouches for another address.
        return inconclusive(
            "control.failed", "dns.http_unvouched",
            f"The resolver's address {ok.addresses[0]} served a page, but DoH gave other "
            f"addresses ({', '.join(doh)}) and no page came from them to compare it with: "
            "plain HTTP has no certificate to show whose page it is.",
            resolver_addresses=list(ok.addresses), doh_addresses=list(doh),
        )  # fmt: skip
    facts: dict[str, Any] = {
        "resolver_addresses": list(ok.addresses),
        "doh_addresses": list(doh),
        "control_status": good.final.status,
        "control_title": good.final.title,
    }
    if found.verdict != "accessible":
        return verdict(
            "blocked", "dns", "dns.blockpage_ip", "dns.steered_http",
            f"The resolver's address {ok.addresses[0]} did not serve the page (or served a "
            f"blockpage) while DoH's address {good.final.ip} answered {good.final.status}.",
            **facts,
        )  # fmt: skip
    page = next(o for o in ev.http if not http_failed(o))
    # Like with like: the control at DoH's address follows no redirect, so first hops.
    how = differs(Page.of(page.hops[0]), Page.of(good.hops[0]))
    if how is None:
        return None  # another address, the same page: a CDN's local edge
    return verdict(
        "blocked", "dns", "dns.blockpage_ip", "dns.middlebox_page",
        f"The resolver's address {ok.addresses[0]} answered another page than DoH's address "
        f"{good.final.ip} for the same URL ({how[:-1]}): {page.hops[0].status} "
        f"{page.hops[0].title!r} against {good.hops[0].status} {good.hops[0].title!r}.",
        page=_page(page), control_page=_page(good), **facts,
    )  # fmt: skip


def _names(cert: Certificate, host: str) -> bool:
    """Whether the certificate names ``host``: exactly, or by one leftmost wildcard."""
    host = host.rstrip(".").lower()
    parent = host.split(".", 1)[1] if "." in host else ""
    for san in (s.lower() for s in cert.sans):
        if san == host or (san.startswith("*.") and parent and san[2:] == parent):
            return True
    return False


def _tls_proof(ev: InputEvidence, host: str, fp: Fingerprints) -> dict[str, Any] | str | None:
    """What the handshake at the address shows: proof (facts), why not (str), or None when
    the next layer's rules decide (a valid chain, or a known interception CA)."""
    shown = next((o for o in ev.tls if o.failure is None), None)
    if shown is None:
        return "the address completed no TLS handshake"
    if shown.cert_valid or fp.interception_match(shown.chain):
        return None
    leaf = shown.chain[0] if shown.chain else None
    if leaf is None or _names(leaf, host):
        # A certificate for the name from a root not trusted here: an intranet's own CA.
        return "its certificate names the host but does not validate here"
    return {
        "certificate": {"subject": leaf.subject, "issuer": leaf.issuer, "sans": list(leaf.sans)},
        "cert_failure": shown.cert_failure,
        "proof": f"its certificate is not valid for {host} "
        f"(it names {', '.join(leaf.sans) or leaf.subject})",
    }


def _http_proof(ev: InputEvidence, ctl: Controls, fp: Fingerprints) -> dict[str, Any] | str:
    """What the page at the address shows: proof (facts) or why not (str)."""
    page = next((o for o in ev.http if not http_failed(o)), None)
    if page is None:
        return "the address gave no page"
    blockpage = next((n for h in page.hops if (n := fp.http_match(h)) is not None), None)
    if blockpage is not None:
        return {
            "fingerprint": blockpage,
            "page": _page(page),
            "proof": f"it serves a known blockpage ({blockpage})",
        }
    innocuous = next((o for o in ctl.http_innocuous if not http_failed(o)), None)
    if innocuous is None:
        return "its page is no known blockpage and no page for another name came from it"
    if not same_page(Page.of(page.hops[0]), Page.of(innocuous.hops[0])):
        # A server that serves this name its own page: what a local-only site does.
        return "it serves this name another page than an innocuous name"
    return {
        "page": _page(page),
        "innocuous_page": _page(innocuous),
        "proof": "it serves the same page whatever name is asked "
        "(a middlebox, not the name's server)",
    }


def ghost_name(
    ev: InputEvidence, ok: DNSObservation, ctl: Controls, fp: Fingerprints, facts: dict[str, Any]
) -> Verdict | None:
    """The resolver answered a name DoH says does not exist: DNS blocking if provably not
    the name's server (and not a resolver that answers every missing name)."""
    host = ev.hostname
    if host is None or not doh_says_gone(ctl.doh):
        return None
    if ctl.helper is not None and ctl.helper.addresses:
        return None  # the helper's resolver knows the name: it exists, the next layers decide
    answer = ", ".join(ok.addresses)
    made_up = [
        {"name": o.hostname, "failure": o.failure, "addresses": list(o.addresses)}
        for o in ctl.dns_nonexistent
    ]
    facts = {
        **facts,
        "doh_failures": sorted({o.failure for o in ctl.doh if o.failure}),
        "made_up_name": made_up,
    }
    invented = next((o for o in ctl.dns_nonexistent if o.addresses), None)
    if invented is not None:
        return inconclusive(
            "site.down", "dns.nxdomain_rewritten",
            f"DNS-over-HTTPS says {host} does not exist; the resolver answered {answer}, but it "
            f"also answers {invented.hostname}, a name made up to exist nowhere "
            f"({', '.join(invented.addresses)}): it rewrites every missing name, not this one.",
            **facts,
        )  # fmt: skip
    proof = _tls_proof(ev, host, fp) if ev.scheme == "https" else _http_proof(ev, ctl, fp)
    if proof is None:
        return None
    lead = f"The resolver answered {answer} for {host}, a name DNS-over-HTTPS says does not exist"
    if isinstance(proof, str):
        return inconclusive(
            "control.failed", "dns.ghost_unproven",
            f"{lead}, and what that address serves does not show whether it is the name's "
            f"server ({proof}): a name that exists only on the local network looks the same.",
            **facts,
        )  # fmt: skip
    if not any(o.failure in _NO_ADDRESS for o in ctl.dns_nonexistent):
        return inconclusive(
            "control.failed", "dns.ghost_no_control",
            f"{lead}, and {proof['proof']}; but no made-up name was answered NXDOMAIN by the "
            "resolver, so one that invents an address for every missing name is not ruled out.",
            **facts, **proof,
        )  # fmt: skip
    return verdict(
        "blocked", "dns", "dns.blockpage_ip", "dns.ghost_name",
        f"{lead} (while it answers a made-up name NXDOMAIN), and {proof['proof']}.",
        **facts, **proof,
    )  # fmt: skip
