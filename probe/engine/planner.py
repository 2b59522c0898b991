"""Which control to ask next, from one input's observations so far: pure, tested by a table.

The per-input steps (``probe.engine.steps``) make the observations (DNS, then TCP for an
endpoint or TLS and HTTP for a URL) and then ask this module what the classifier's rules
still need, until it answers nothing. Each control is asked at most once:

=================  =================================================  ============
control            when                                               rule
=================  =================================================  ============
tls_innocuous      the handshake with the target's SNI failed         5
tls_at_doh         the handshake failed or its chain did not          4
                   validate, and DoH gave another measurable address
http_at_doh        a plain-HTTP page, and DoH gave another address    4
http_innocuous     the fetch failed after the request (cut, timeout,  6
                   malformed or slow body)
dns_nonexistent    a ghost name: the resolver answered, every DoH     4
                   answer is NXDOMAIN (a made-up name, to the resolver)
http_innocuous     a ghost name's plain-HTTP page (the same page for  4
                   any name is a middlebox's)
helper             a helper is configured, the input was contacted,   1, 5, 6
                   and ``classify.controls.helper_decides``
=================  =================================================  ============

The innocuous Host is asked only when the input's own URL failed: a later hop was asked of
another address, or for another path. Such a hop, when it has another scheme, host or port
than any measured so far, is measured as an input of its own (``later_hop``): the same
steps, the same controls by this same table, at most ``MAX_HOPS`` of them per input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from measurements.observations import DNSObservation
from probe.classify.common import first_ok
from probe.classify.controls import helper_decides, http_failed
from probe.classify.evidence import InputEvidence
from probe.classify.http import failed_later
from probe.classify.middlebox import doh_says_gone
from targets.model import UrlTarget, url_problem

ControlKind = Literal[
    "tls_innocuous", "tls_at_doh", "http_at_doh", "http_innocuous", "helper", "dns_nonexistent"
]


@dataclass(frozen=True, slots=True)
class Ask:
    """One control to ask; ``address`` is where, for the controls at DoH's address."""

    kind: ControlKind
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Seen:
    """One input's observations so far, and what has been asked."""

    evidence: InputEvidence
    doh: tuple[DNSObservation, ...] = ()
    address: str | None = None  # the address measured, when one was contacted
    asked: frozenset[ControlKind] = frozenset()
    helper: bool = False  # a control helper is configured


def doh_alternative(seen: Seen, refusal: Callable[[str], str | None]) -> str | None:
    """A measurable address DoH gave, when the resolver under test gave none of DoH's."""
    doh = [a for o in seen.doh if o.failure is None for a in o.addresses]
    resolved = {a for o in seen.evidence.dns for a in o.addresses}
    if not doh or seen.address in doh or not seen.evidence.dns or resolved & set(doh):
        return None
    return next((a for a in doh if refusal(a) is None), None)


def http_follows(ev: InputEvidence) -> bool:
    """Whether the fetch follows the handshake (never over a failed or invalid chain)."""
    return not ev.tls or (ev.tls[-1].failure is None and ev.tls[-1].cert_valid is not False)


def next_controls(seen: Seen, refusal: Callable[[str], str | None]) -> tuple[Ask, ...]:
    """The controls to ask now, in order; () when the rules need nothing more."""
    ev, out = seen.evidence, []
    if ev.tls and not http_follows(ev):
        last = ev.tls[-1]
        if last.failure is not None and last.operation == "tls_handshake":
            out.append(Ask("tls_innocuous"))
        alternative = doh_alternative(seen, refusal)
        if alternative is not None:
            out.append(Ask("tls_at_doh", alternative))
    if ev.http:
        if ev.scheme == "http":
            alternative = doh_alternative(seen, refusal)
            if alternative is not None:
                out.append(Ask("http_at_doh", alternative))
        last_fetch = ev.http[-1]
        if (
            http_failed(last_fetch) and len(last_fetch.hops) == 1
            and last_fetch.final.operation in ("http_request", "http_body")
        ):  # fmt: skip
            out.append(Ask("http_innocuous"))
    out += _ghost_controls(seen)
    if seen.helper and seen.address is not None and helper_decides(ev):
        out.append(Ask("helper"))
    return tuple(a for a in out if a.kind not in seen.asked)


# The redirects a fetch follows (``steps.Measurer._fetch``), and so the most later hops
# measured per input.
MAX_HOPS = 5

Origin = tuple[str, str, int]  # scheme, host, port


@dataclass(frozen=True, slots=True)
class LaterHop:
    """A hop after the first at which a chain failed, to measure as an input of its own."""

    number: int  # its place in the input's chain (the input's URL is hop 1)
    url: str
    chain: tuple[str, ...]  # the input's chain up to this hop, this hop's URL last


def origin(url: str) -> Origin:
    """What a URL is measured as: its scheme, host and port (another path is the same)."""
    target = UrlTarget.parse(url)
    return target.scheme, target.host, target.port


def later_hop(
    ev: InputEvidence, measured: frozenset[Origin], before: tuple[str, ...] = ()
) -> LaterHop | None:
    """The hop at which ``ev``'s chain failed, when it is after the first and of an origin
    not yet ``measured``; ``before`` is the chain that led to ``ev``'s URL."""
    last = failed_later(ev)
    if last is None:
        return None
    url = last.final.url
    if url_problem(url) is not None or origin(url) in measured:
        return None  # nothing a fetch can ask for, or measured already (a loop)
    chain = (*before, *(h.url for h in last.hops))
    return LaterHop(len(chain), url, chain)


def _ghost_controls(seen: Seen) -> list[Ask]:
    """A ghost name (the resolver answered, DoH says it does not exist): rule 4's controls."""
    ev = seen.evidence
    if seen.address is None or first_ok(ev.dns) is None or not doh_says_gone(seen.doh):
        return []
    out = [Ask("dns_nonexistent")]
    if ev.scheme == "http" and ev.http and not http_failed(ev.http[-1]):
        out.append(Ask("http_innocuous"))
    return out
