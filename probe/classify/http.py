"""HTTP rules (docs/architecture.md, rule 6): blockpages, the innocuous-Host control, the helper."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from measurements.observations import HTTPHop, HTTPObservation
from probe.classify.common import (
    HTTP_DETAIL,
    TIMEOUT,
    inconclusive,
    verdict,
)
from probe.classify.connection import tcp_failure_verdict
from probe.classify.evidence import Controls, HelperReport, InputEvidence
from probe.classify.fingerprints import Fingerprints
from probe.classify.middlebox import steered_http
from probe.classify.pagediff import Page, differs
from probe.classify.pages import known_page, with_hint
from probe.classify.verdict import Verdict


def _succeeded(obs: HTTPObservation) -> bool:
    hop = obs.final
    return hop.failure is None and hop.refused is None and hop.status is not None


def failed_later(ev: InputEvidence) -> HTTPObservation | None:
    """The last fetch, when every fetch failed and the last failed, or was refused, at a hop
    after the first: what the input's own rules cannot judge (no control saw that hop)."""
    if not ev.http or any(_succeeded(o) for o in ev.http):
        return None
    last = ev.http[-1]
    return last if len(last.hops) > 1 else None


def classify_http(ev: InputEvidence, ctl: Controls, fp: Fingerprints) -> Verdict:
    """The HTTP stage's verdict; a plain-HTTP page DNS steered is put on DNS's account."""
    result = _classify_http(ev, ctl, fp)
    if ev.scheme == "http":
        steered = steered_http(ev, ctl, fp, result)
        if steered is not None:
            return steered
    return result


def _classify_http(ev: InputEvidence, ctl: Controls, fp: Fingerprints) -> Verdict:
    if not ev.http:
        return inconclusive(
            "control.failed",
            "deadline" if ev.deadline_exceeded else "http.not_measured",
            "The page was not fetched before the per-target deadline.",
        )
    ok = next((o for o in ev.http if _succeeded(o)), None)
    if ok is None:
        return _http_failure(ev, ctl, fp)
    known = known_page(ok, fp, ctl, ev.hostname)  # a blockpage, or a look-alike, by itself
    if known is not None:
        return known
    # Over validated HTTPS the page came from the site itself: a difference is the site's own
    # doing (localisation, A/B tests), so only plain HTTP is compared with the helper's page.
    diff = _helper_diff(ok, ctl) if ev.scheme == "http" else None
    return with_hint(diff or _page_ok(ok), ok, fp, ctl, ev.hostname)


def _page_ok(ok: HTTPObservation) -> Verdict:
    final = ok.final
    return verdict(
        "accessible",
        None,
        "ok",
        "http.ok",
        f"{final.url} answered {final.status} ({final.body_length} bytes).",
        status=final.status,
        title=final.title,
        hops=[h.url for h in ok.hops],
    )


@dataclass(frozen=True, slots=True)
class _Failed:
    """A URL that gave no page on any attempt, as each step of the failure rules reads it."""

    last: HTTPObservation  # the last attempt; its final hop is where it failed
    attempts: int
    ctl: Controls
    fp: Fingerprints

    @property
    def hop(self) -> HTTPHop:
        return self.last.final

    @property
    def failure(self) -> str:
        return self.hop.failure or "unknown_failure"

    @property
    def where(self) -> dict[str, Any]:
        """Which URL failed, during what, after how many attempts."""
        return {"url": self.hop.url, "operation": self.hop.operation, "attempts": self.attempts}

    @property
    def facts(self) -> dict[str, Any]:
        return {**self.where, "failure": self.failure}

    @property
    def helper(self) -> HelperReport | None:
        """The helper's page, when the failed hop is the input's URL (the one it fetched)."""
        return _helper_page(self.ctl) if len(self.last.hops) == 1 else None


def _http_failure(ev: InputEvidence, ctl: Controls, fp: Fingerprints) -> Verdict:
    """Rule 6 for a URL that gave no page: the first step that decides, else no control."""
    failed = _Failed(ev.http[-1], len(ev.http), ctl, fp)
    for step in _FAILURE_STEPS:
        found = step(failed)
        if found is not None:
            return found
    return _no_control(failed)


def _refused_redirect(f: _Failed) -> Verdict | None:
    """A redirect led where the probe would not go: blocked if a hop before it is a blockpage."""
    hop = f.hop
    if hop.refused is None:
        return None
    for earlier in f.last.hops:
        name = f.fp.http_match(earlier)
        if name is not None:
            return verdict(
                "blocked",
                "http",
                "http.redirect",
                "http.fingerprint",
                f"{earlier.url} redirected to a known blockpage ({name}).",
                fingerprint=name,
                **f.where,
            )
    return inconclusive(
        "control.failed",
        "safety.not_contacted",
        f"A redirect led to {hop.url}, which was not contacted: {hop.refused}.",
        **f.where,
    )


def _connect_failed(f: _Failed) -> Verdict | None:
    """No connection: the TCP rules decide, for the input's own address only."""
    hop, failure = f.hop, f.failure
    if hop.operation != "connect":
        return None
    if len(f.last.hops) > 1:
        # The helper was asked about the input's address, not this hop's: it proves
        # nothing here (a redirect chain's hops are a later rule's business).
        return inconclusive(
            "control.failed",
            "http.redirect_unreachable",
            f"A redirect led to {hop.url}, whose address did not accept a connection "
            f"({failure}); no control tried that address.",
            failure=failure,
            **f.where,
        )
    return tcp_failure_verdict(failure, f.ctl, f"Connecting to {hop.ip}", **f.where)


def _slow_body(f: _Failed) -> Verdict | None:
    """The body timed out after some of it arrived."""
    hop = f.hop
    if not (hop.operation == "http_body" and f.failure == TIMEOUT and hop.body_length):
        return None
    # Bytes flowed, only too slowly for the timeout: a slow-down, not a cut. Calling it
    # blocked would turn every throttled page into a false "http.timeout"; the
    # throughput test, where the input has one, is what measures a slow-down.
    return inconclusive(
        "control.failed",
        "http.slow_body",
        f"The page of {hop.url} arrived too slowly: {hop.body_length} bytes before the "
        "timeout. A slow-down is not blocking; only a throughput test can call it "
        "throttling.",
        body_length=hop.body_length,
        **f.facts,
    )


def _malformed_answer(f: _Failed) -> Verdict | None:
    """The answer was not HTTP: blocked only if the helper got a well-formed one."""
    hop, helper = f.hop, f.helper
    if not hop.malformed:
        return None
    if helper is not None:
        return verdict(
            "blocked",
            "http",
            "http.malformed",
            "http.malformed_helper",
            f"{hop.url} gave an answer that is not well-formed HTTP on every attempt, "
            f"while the control helper got a well-formed one for the same URL at the same "
            f"address ({helper.status}).",
            helper_status=helper.status,
            **f.facts,
        )
    return inconclusive(
        "http.malformed",
        "http.malformed",
        f"{hop.url} gave an answer that is not well-formed HTTP, and no control got a "
        "well-formed one for the same URL: a broken server looks the same.",
        **f.facts,
    )


def _after_request(f: _Failed) -> bool:
    """The request was sent and then cut or left unanswered, in a way rule 6 labels."""
    return f.hop.operation in ("http_request", "http_body") and f.failure in HTTP_DETAIL


def _cut_vs_helper(f: _Failed) -> Verdict | None:
    """Cut or timed out after the request, while the helper got the page (promptly)."""
    hop, failure, helper = f.hop, f.failure, f.helper
    if not _after_request(f) or helper is None or (failure == TIMEOUT and not _prompt(helper, hop)):
        return None
    return verdict(
        "blocked",
        "http",
        HTTP_DETAIL[failure],
        "http.helper_page",
        f"The request for {hop.url} failed ({failure}) after it was sent, on every "
        f"attempt, while the control helper got the same URL from the same address "
        f"({helper.status}).",
        helper_status=helper.status,
        **f.facts,
    )


def _cut_vs_innocuous_host(f: _Failed) -> Verdict | None:
    """Cut after the request, while the same address answered another name."""
    hop, failure = f.hop, f.failure
    if not _after_request(f) or len(f.last.hops) > 1:
        # A later hop was asked of another address, or for another path, than the control
        # was: not like with like. That hop is measured as an input of its own instead.
        return None
    # The innocuous-Host control asked the same address for the same path. It answers
    # for a cut (a reset or a close): a server does not cut its own name's requests
    # while answering another's. It does not answer for a timeout: an unknown Host is
    # often served by a default site that answers at once where the real one is slow.
    control = next((o for o in f.ctl.http_innocuous if o.final.status is not None), None)
    if control is None or failure == TIMEOUT:
        return None
    return verdict(
        "blocked",
        "http",
        HTTP_DETAIL[failure],
        "http.innocuous_host",
        f"The request for {hop.url} failed ({failure}) after it was sent, on every "
        f"attempt, while the same address answered a request for the same path with "
        f"another name ({control.final.status}).",
        **f.facts,
    )


def _no_control(f: _Failed) -> Verdict:
    """No step decided: no control showed the URL working from elsewhere."""
    hop, failure = f.hop, f.failure
    return inconclusive(
        "control.failed",
        "http.no_control",
        f"Fetching {hop.url} failed ({failure}, during {hop.operation}) and no control "
        "showed the same URL working from elsewhere.",
        **f.facts,
    )


# Tried in this order; each step assumes that none before it decided.
_FAILURE_STEPS: tuple[Callable[[_Failed], Verdict | None], ...] = (
    _refused_redirect,
    _connect_failed,
    _slow_body,
    _malformed_answer,
    _cut_vs_helper,
    _cut_vs_innocuous_host,
)


def _prompt(helper: HelperReport, hop: HTTPHop) -> bool:
    """The helper had its answer's headers in under half the time the probe waited in vain.

    A path that is slow for everyone answers the helper late too: only a prompt answer shows
    that the silence was the path's doing here (rule 6, like with like).
    """
    waited = hop.timings.total_ms
    return (
        helper.first_byte_ms is not None and waited is not None
        and helper.first_byte_ms < waited / 2
    )  # fmt: skip


def _helper_page(ctl: Controls) -> HelperReport | None:
    """The helper's report when it fetched the input's URL and got a well-formed answer."""
    helper = ctl.helper
    return helper if helper is not None and helper.status is not None else None


def _helper_diff(ok: HTTPObservation, ctl: Controls) -> Verdict | None:
    """Rule 6's comparison with the control helper's page (only when a helper answered)."""
    helper = ctl.helper
    if helper is None or helper.status is None:
        return None
    final = ok.final
    hosts = {_host(h.url) for h in ok.hops}
    if helper.final_host and _host(final.url) != helper.final_host and len(hosts) > 1:
        return verdict(
            "blocked",
            "http",
            "http.redirect",
            "http.helper_redirect",
            f"Redirected to {_host(final.url)}, a host the control helper never saw.",
            final_url=final.url,
            helper_final_host=helper.final_host,
        )
    how = differs(Page.of(final), Page(helper.status, helper.title, helper.body_length))
    if how is not None:
        return verdict(
            "blocked",
            "http",
            "http.diff",
            "http.helper_diff",
            "The page differs from the control helper's: " + how,
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
