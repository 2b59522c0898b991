"""What a page shows by itself: a censor's blockpage, a filter's, or a shield's look-alike.

All are read from the fingerprints (probe/classify/fingerprints.toml) and need no control:
a fingerprinted blockpage is blocking (rule 6), and a CDN's or WAF's own page for a client it
distrusts is never blocking, however unlike the control's page it is. Between them:

- filtering software's stock page (squid's ERR_ACCESS_DENIED, a FortiGate's) and a notice's
  high-confidence wording are blockpages too, except where the page is proven the site's
  own: a validated HTTPS page of the input's host (its certificate says who sent it), or the
  page the control helper got as well (rule 6: what the control sees too is not blocking);
- a low-confidence phrase is a hint: recorded in the evidence, it changes no verdict, except
  that a page the helper's differs from (``http.helper_diff``) is then named a blockpage.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

from measurements.observations import HTTPHop, HTTPObservation
from probe.classify.common import inconclusive, verdict
from probe.classify.evidence import Controls
from probe.classify.fingerprints import Fingerprints, HTTPFingerprint
from probe.classify.verdict import Verdict


def _sites_own(hop: HTTPHop, ok: HTTPObservation, ctl: Controls, hostname: str | None) -> bool:
    """The page is proven the site's: its host's validated HTTPS, or the helper's page too."""
    parts = urlsplit(hop.url)
    if parts.scheme == "https" and hostname and (parts.hostname or "") == hostname.lower():
        return True
    helper = ctl.helper
    return (
        hop is ok.final and helper is not None and helper.status is not None
        and (helper.status, helper.title) == (hop.status, hop.title)
    )  # fmt: skip


def _what(found: HTTPFingerprint) -> str:
    if found.kind == "software":
        return f"the stock page of a filter ({found.operator}, {found.name})"
    if found.kind == "phrase":
        return f"a notice page's wording ({found.name}, {found.confidence} confidence)"
    return f"a known blockpage ({found.name})"


def _facts(found: HTTPFingerprint) -> dict[str, str]:
    """What the evidence says of a fingerprint: its name, kind, and where it comes from."""
    facts = {"fingerprint": found.name, "kind": found.kind}
    if found.operator:
        facts["operator"] = found.operator
    if found.kind == "phrase":
        facts["confidence"] = found.confidence
    if found.source:
        facts["source"] = found.source
    return facts


def known_page(
    ok: HTTPObservation, fp: Fingerprints, ctl: Controls, hostname: str | None
) -> Verdict | None:
    """The verdict a hop's page gives by itself, if any: a blockpage first, then a look-alike."""
    for hop in ok.hops:
        found = fp.blockpage_match(hop)
        if found is None or (found.kind != "blockpage" and _sites_own(hop, ok, ctl, hostname)):
            continue
        detail = "http.redirect" if hop.status in range(300, 400) else "http.blockpage"
        return verdict(
            "blocked",
            "http",
            detail,
            "http.fingerprint",
            f"{hop.url} returned {_what(found)}.",
            **_facts(found),
            status=hop.status,
            hops=[h.url for h in ok.hops],
        )
    return _lookalike(ok, fp)


def with_hint(
    result: Verdict, ok: HTTPObservation, fp: Fingerprints, ctl: Controls, hostname: str | None
) -> Verdict:
    """The verdict with the final page's low-confidence phrase, if any, as a hint.

    A hint alone changes nothing: a news page or a forum says "the site is blocked" as
    readily as a notice does. Only where the page already differs from the helper's
    (``http.helper_diff``: blocked by that control) does it name the difference a blockpage.
    """
    hop = ok.final
    found = fp.hint_match(hop)
    if found is None or _sites_own(hop, ok, ctl, hostname):
        return result
    if result.rule == "http.helper_diff":
        return verdict(
            "blocked",
            "http",
            "http.blockpage",
            "http.phrase_helper_diff",
            f"{hop.url} returned {_what(found)}, and the page differs from the control helper's.",
            **{**result.evidence, **_facts(found)},
        )
    return replace(result, evidence={**result.evidence, "hint": {**_facts(found), "url": hop.url}})


def _lookalike(ok: HTTPObservation, fp: Fingerprints) -> Verdict | None:
    """A CDN's or WAF's page for a distrusted client: not the site, and not censorship."""
    for hop in ok.hops:
        known = fp.lookalike_match(hop)
        if known is not None:
            return inconclusive(
                "control.failed",
                "http.cdn_challenge",
                f"{hop.url} answered {hop.status} with {known.operator}'s own page for a client "
                f"it distrusts ({known.name}): the site's shield, not a censor, held the page "
                "back, and what the site serves here is unknown.",
                fingerprint=known.name,
                operator=known.operator,
                source=known.source,
                status=hop.status,
                hops=[h.url for h in ok.hops],
            )
    return None
