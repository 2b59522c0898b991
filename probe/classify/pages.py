"""What a page shows by itself: a censor's blockpage, or a shield's look-alike of one.

Both are read from the fingerprints (probe/classify/fingerprints.toml) and need no control:
a fingerprinted blockpage is blocking (rule 6), and a CDN's or WAF's own page for a client it
distrusts is never blocking, however unlike the control's page it is.
"""

from __future__ import annotations

from measurements.observations import HTTPObservation
from probe.classify.common import inconclusive, verdict
from probe.classify.fingerprints import Fingerprints
from probe.classify.verdict import Verdict


def known_page(ok: HTTPObservation, fp: Fingerprints) -> Verdict | None:
    """The verdict a hop's page gives by itself, if any: a blockpage first, then a look-alike."""
    for hop in ok.hops:
        name = fp.http_match(hop)
        if name is not None:
            detail = "http.redirect" if hop.status in range(300, 400) else "http.blockpage"
            return verdict(
                "blocked",
                "http",
                detail,
                "http.fingerprint",
                f"{hop.url} returned a known blockpage ({name}).",
                fingerprint=name,
                status=hop.status,
                hops=[h.url for h in ok.hops],
            )
    return _lookalike(ok, fp)


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
