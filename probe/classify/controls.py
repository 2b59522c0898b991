"""Which observations a control can still decide: the rules' own view, for the planner.

The engine asks the control helper only when the classifier would use its answer. That
question belongs to the rules, so it lives here beside them: the step planner
(``probe.engine.planner``) reads it, and a property test holds it to ``classify`` (when this
says no, the helper's report cannot change the verdict).
"""

from __future__ import annotations

from measurements.observations import HTTPObservation
from probe.classify.evidence import InputEvidence

# Where a fetch ended without an answer that only a fetch from elsewhere can explain: a
# connect, a cut or a timeout after the request, a malformed or slow body.
_FETCH_FAILURES = ("connect", "http_request", "http_body")


def http_failed(obs: HTTPObservation) -> bool:
    """A fetch that ended without an HTTP answer."""
    return obs.failure is not None or obs.final.refused is not None or obs.final.status is None


def helper_decides(ev: InputEvidence) -> bool:
    """Whether the helper's view could decide this input: a failed connect, a failed or
    invalid chain, a fetch that failed where only the same URL from elsewhere tells the
    site's fault from the path's, or a plain-HTTP page (only the helper's copy shows it was
    altered)."""
    if ev.tcp and all(o.failure is not None for o in ev.tcp):
        return True
    # TLS observations count for an HTTPS input only, as in classify (the rest ignores them).
    tls = ev.tls if ev.scheme == "https" else ()
    if tls and all(o.failure is not None for o in tls):
        return tls[-1].operation == "connect"
    if tls and tls[-1].cert_valid is False:
        return True
    if ev.http and all(http_failed(o) for o in ev.http):
        final = ev.http[-1].final
        # A malformed answer is judged against the helper's wherever it broke (http.py).
        return final.malformed or final.operation in _FETCH_FAILURES
    # The classifier compares pages with the helper's for plain HTTP only (http.py): the same
    # test here, by scheme (a test made of parts once found "no TLS" and "http" disagreeing).
    return bool(ev.http) and ev.scheme == "http"
