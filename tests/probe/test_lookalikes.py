"""Look-alikes: a CDN's challenge or a WAF's denial is never called blocked."""

from __future__ import annotations

import pytest

from probe.classify import classify
from probe.classify.evidence import Controls, HelperReport
from probe.classify.fingerprints import load_bundled, parse
from tests.probe.test_classify import HOST, PUBLIC, dns, doh, hop, http, tls, url

FP = load_bundled()
CHALLENGE = b"<html><head><title>Just a moment...</title></head><body>Checking</body></html>"
# The helper saw the real page: without the look-alike rule this is a false http.diff.
HELPER_SAW_THE_SITE = HelperReport(
    addresses=(PUBLIC,), tcp_ok=True, status=200, title="Example", body_length=40_000
)
PLAIN = {"input": f"http://{HOST}/", "scheme": "http"}


def page(status: int, body: bytes, *headers: tuple[str, str], scheme: str = "http") -> object:
    return http(hop(status, url=f"{scheme}://{HOST}/", body=body, title=None, headers=headers))


CASES = [
    (
        "Cloudflare's challenge over plain HTTP, the helper saw the page",
        url(
            **PLAIN, dns=(dns(PUBLIC),), http=(page(503, CHALLENGE, ("Server", "cloudflare")),)
        ),
        "http.cdn_challenge",
    ),
    (
        "known by its header alone",
        url(
            **PLAIN,
            dns=(dns(PUBLIC),),
            http=(page(403, b"<html></html>", ("cf-mitigated", "challenge")),),
        ),
        "http.cdn_challenge",
    ),
    (
        "over HTTPS too: the page is the shield's, not the site's",
        url(dns=(dns(PUBLIC),), tls=(tls(),), http=(page(503, CHALLENGE, scheme="https"),)),
        "http.cdn_challenge",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "ev", "rule"), CASES)
def test_a_challenge_is_inconclusive_with_its_operator(name: str, ev: object, rule: str) -> None:
    got = classify(ev, Controls(doh=(doh(PUBLIC),), helper=HELPER_SAW_THE_SITE), FP)  # type: ignore[arg-type]
    assert (got.verdict, got.detail, got.rule) == ("inconclusive", "control.failed", rule), name
    assert got.evidence["operator"] == "Cloudflare" and got.evidence["source"]
    assert "Cloudflare" in got.reason


def test_a_censors_blockpage_still_wins() -> None:
    body = CHALLENGE + "Доступ к данному ресурсу ограничен".encode()
    ev = url(**PLAIN, dns=(dns(PUBLIC),), http=(page(200, body),))
    got = classify(ev, Controls(doh=(doh(PUBLIC),)), FP)
    assert (got.verdict, got.detail) == ("blocked", "http.blockpage")


def test_a_look_alike_names_its_operator_and_source() -> None:
    entry = {"name": "x", "location": "body", "match": "contains", "pattern": "p"}
    with pytest.raises(ValueError, match="names its operator and source"):
        parse({"lookalike": [entry]})
    assert parse({"lookalike": [{**entry, "operator": "A CDN", "source": "its docs"}]}).lookalikes
