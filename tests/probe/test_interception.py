"""Known interception CAs: any certificate of the presented chain, by name, key or fingerprint."""

from __future__ import annotations

import pytest

from measurements.observations import Certificate, TLSObservation
from probe.classify import classify
from probe.classify.evidence import Controls, HelperReport, ReferenceTLS
from probe.classify.fingerprints import dn_attributes, load_bundled, parse
from tests.probe.test_classify import HOST, PUBLIC, dns, doh, url

FP = load_bundled()
KEY = "ab" * 32


def cert(subject: str, issuer: str, sha: str = "cd" * 32, spki: str = "") -> Certificate:
    return Certificate(subject, issuer, (HOST,), "2019-07-01", "2020-07-01", sha, spki)


def handshake(*chain: Certificate, valid: bool | None = False) -> TLSObservation:
    failure = None if valid else "ssl_unknown_authority"
    return TLSObservation(
        PUBLIC, 443, HOST, None, None, 1.0, 2.0, "TLSv1.3", None, chain, valid, failure, 3.0
    )


LEAF_2019 = cert(f"CN={HOST}", "CN=Security Certificate,C=KZ")
MIDDLE_2019 = cert("CN=Security Certificate,C=KZ", "CN=Qaznet Trust Network,C=KZ")
ROOT_2019 = cert("CN=Qaznet Trust Network,C=KZ", "CN=Qaznet Trust Network,C=KZ")

ROWS = [
    # (name, chain, trust store accepted it, fingerprint or None, position, how)
    ("2019: the leaf's issuer is the KZ intermediate", (LEAF_2019, MIDDLE_2019), False,
     "kz.security-certificate-2019", 0, "issuer"),
    ("2019: a leaf of another issuer, the Qaznet intermediate above it",
     (cert(f"CN={HOST}", "CN=Some Proxy"), cert("CN=Some Proxy", "O=Qaznet Trust Network")),
     False, "kz.qaznet-2019", 1, "issuer"),
    ("2019 whole chain, accepted by a trust store that holds the national root",
     (LEAF_2019, MIDDLE_2019, ROOT_2019), True, "kz.security-certificate-2019", 0, "issuer"),
    ("2020: the root named by its O", (cert(f"CN={HOST}", "O=Information Security Certification "
     "Authority,CN=Root"),), False, "kz.isca-2020", 0, "issuer"),
    ("a 'Security Certificate' outside KZ is no sign", (cert(f"CN={HOST}",
     "CN=Security Certificate,C=US"),), False, None, 0, ""),
    ("a name that merely contains the CA's is no sign", (cert(f"CN={HOST}",
     "CN=Not Qaznet Trust Network Really"),), False, None, 0, ""),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_every_certificate_of_the_chain_is_checked(row: tuple[object, ...]) -> None:
    _, chain, valid, name, position, how = row
    assert isinstance(chain, tuple)
    got = classify(url(dns=(dns(PUBLIC),), tls=(handshake(*chain, valid=bool(valid)),)),
                   Controls(doh=(doh(PUBLIC),)), FP)  # fmt: skip
    if name is None:
        assert got.verdict != "blocked"
        return
    assert (got.verdict, got.layer, got.detail, got.rule) == (
        "blocked", "tls", "tls.mitm", "tls.mitm_fingerprint",
    )  # fmt: skip
    facts = got.evidence
    assert (facts["fingerprint"], facts["position"], facts["matched_by"]) == (name, position, how)
    assert facts["certificate"]["subject"] == chain[position].subject
    assert facts["source"] and facts["cert_valid"] is valid
    assert ("trust store accepted" in got.reason) is bool(valid)


def test_known_by_key_or_certificate_whatever_its_name() -> None:
    fp = parse(
        {"interception": [{"name": "x.by-key", "spki_sha256": [KEY], "source": "a test"},
                          {"name": "x.by-cert", "sha256": ["ef" * 32], "source": "a test"}]}
    )  # fmt: skip
    renamed = cert("CN=Friendly Corp Root", "CN=Friendly Corp Root", spki=KEY)
    got = fp.interception_match((cert(f"CN={HOST}", "CN=Friendly Corp Root"), renamed))
    assert got is not None and (got.fingerprint, got.position, got.how) == ("x.by-key", 1, "key")
    got = fp.interception_match((cert(f"CN={HOST}", "CN=Anyone", sha="ef" * 32),))
    assert got is not None and (got.fingerprint, got.how) == ("x.by-cert", "certificate")


def test_a_helper_is_not_needed_and_cannot_overrule() -> None:
    ev = url(dns=(dns(PUBLIC),), tls=(handshake(LEAF_2019, MIDDLE_2019, valid=True),))
    # The helper met the same forged chain (it crossed the same censor, or was fooled too).
    with_helper = Controls(doh=(doh(PUBLIC),), helper=HelperReport(tls_valid=False))
    assert classify(ev, with_helper, FP).detail == "tls.mitm"
    assert classify(ev, Controls(), FP).detail == "tls.mitm"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "x", "names": ["A"]}, "every interception CA cites a source"),
        ({"name": "x", "source": "s"}, "names, sha256 or spki_sha256 needed"),
        ({"name": "x", "source": "s", "sha256": ["zz"]}, "is not SHA-256 hex"),
        ({"name": "x", "names": ["A"], "kind": "commercial"}, "every interception CA cites"),
        (
            {"name": "x.av", "names": ["A"], "source": "s", "kind": "antivirus"},
            r"fingerprint x.av: kind 'antivirus' is not one of \('national', 'commercial'\)",
        ),
    ],
)
def test_a_bad_entry_fails_loudly(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse({"interception": [entry]})


def test_distinguished_names_are_read_whole() -> None:
    attrs = dn_attributes(r"CN=Security Certificate,O=A\, B+OU=C,C=KZ")
    assert attrs == {"CN": {"security certificate"}, "O": {"a, b"}, "OU": {"c"}, "C": {"kz"}}


# A commercial interceptor forges every site's chain on the volunteer's machine or network:
# a censor's only where the references of the same sweep were spared.
ESET_LEAF = cert(f"CN={HOST}", "C=SK,O=ESET spol. s r.o.,CN=ESET SSL Filter CA")
REF = "https://ref.test/"
AT_REFS = (ReferenceTLS(REF, "CN=ESET SSL Filter CA", "eset.ssl-filter"),)
SPARED = (ReferenceTLS(REF, "CN=R11,O=Let's Encrypt,C=US", None),)
KZ_AT_REFS = (ReferenceTLS(REF, "CN=Security Certificate,C=KZ", "kz.security-certificate-2019"),)

KINDS = [
    # (name, chain, references' chains, trust store accepted, verdict, rule, reason words)
    ("national, not at the references", (LEAF_2019, MIDDLE_2019), SPARED, False,
     "blocked", "tls.mitm_fingerprint", "national interception CA"),
    ("national, not at the references, trusted", (LEAF_2019, MIDDLE_2019), SPARED, True,
     "blocked", "tls.mitm_fingerprint", "trust store accepted"),
    ("national at the references too: still a censor's", (LEAF_2019, MIDDLE_2019), KZ_AT_REFS,
     False, "blocked", "tls.mitm_fingerprint", "every host is intercepted"),
    ("national at the references too, trusted", (LEAF_2019, MIDDLE_2019), KZ_AT_REFS, True,
     "blocked", "tls.mitm_fingerprint", "every host is intercepted"),
    ("commercial, references spared: aimed at this name", (ESET_LEAF,), SPARED, False,
     "blocked", "tls.mitm_fingerprint", "aimed at this name"),
    ("commercial, references spared, trusted", (ESET_LEAF,), SPARED, True,
     "blocked", "tls.mitm_fingerprint", "aimed at this name"),
    ("commercial at the references too: local", (ESET_LEAF,), AT_REFS, False,
     "inconclusive", "tls.mitm_local", "local to this machine or network"),
    ("commercial at the references too, trusted (the antivirus installed its root)",
     (ESET_LEAF,), AT_REFS, True, "inconclusive", "tls.mitm_local", "antivirus"),
    ("commercial, no reference presented a chain", (ESET_LEAF,), (), True,
     "inconclusive", "tls.mitm_unreferenced", "cannot be ruled out"),
    ("commercial, another product at the references", (ESET_LEAF,),
     (ReferenceTLS(REF, "CN=Zscaler Root CA", "zscaler.root"),), False,
     "blocked", "tls.mitm_fingerprint", "aimed at this name"),
]  # fmt: skip


@pytest.mark.parametrize("row", KINDS, ids=[r[0] for r in KINDS])
def test_a_commercial_ca_is_a_censor_s_only_where_the_references_were_spared(
    row: tuple[object, ...],
) -> None:
    _, chain, refs, valid, name, rule, words = row
    assert isinstance(chain, tuple) and isinstance(refs, tuple) and isinstance(words, str)
    ctl = Controls(doh=(doh(PUBLIC),), reference_tls=refs)
    got = classify(url(dns=(dns(PUBLIC),), tls=(handshake(*chain, valid=bool(valid)),)), ctl, FP)
    assert (got.verdict, got.rule) == (name, rule), got.reason
    assert got.detail == ("tls.mitm" if name == "blocked" else "control.failed")
    assert words in got.reason, got.reason
    facts = got.evidence
    assert facts["seen_at_references"] == [r.url for r in refs if r.interception is not None
                                           and r.interception == facts["fingerprint"]]  # fmt: skip
    assert facts["chain_pem"] == ["" for _ in chain]  # the test certificates carry no PEM
    if name == "inconclusive":  # the reason names the CA, and the product's kind
        assert facts["kind"] == "commercial" and "eset.ssl-filter" in got.reason


def test_every_bundled_interception_ca_has_a_kind_and_a_source() -> None:
    kinds = {ca.name: ca.kind for ca in FP.interception}
    assert {k for k, v in kinds.items() if v == "national"} == {
        "kz.qaznet-2019", "kz.security-certificate-2019", "kz.isca-2020",
    }  # fmt: skip
    assert {"eset.ssl-filter", "fortinet.fortigate-ca", "zscaler.root"} <= set(kinds)
    assert all(ca.source for ca in FP.interception)
    # A vendor's own website must not look like its interceptor (names are matched whole).
    assert FP.interception_match((cert("CN=www.eset.com,O=ESET spol. s r.o.", "CN=R11"),)) is None


def test_a_kind_defaults_to_national() -> None:
    fp = parse({"interception": [{"name": "x", "names": ["A"], "source": "s"}]})
    assert fp.interception[0].kind == "national"
