"""tls.mitm evidence carries the presented chain in PEM; stored observations do not.

A reader re-checks an interception verdict with the certificates themselves (openssl, a CT
search), so both tls.mitm rules put ``chain_pem`` (leaf first) in the verdict's evidence; the
observations keep only each certificate's hashes, so an ordinary input's evidence does not
grow by the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from measurements.addresses import parse_networks
from measurements.certificates import summarize
from measurements.observations import Certificate, to_jsonable
from probe.classify import classify
from probe.classify.evidence import Controls, HelperReport
from probe.classify.fingerprints import load_bundled
from probe.cli import main
from probe.helper.server import HelperSettings
from tests.probe.test_classify import PUBLIC, dns, doh, url
from tests.probe.test_interception import handshake
from tests.servers.helper_server import running_helper
from tests.servers.tcp_servers import TLSServer
from tests.servers.world import World, running_world

FP = load_bundled()
UNKNOWN_ROOT = trustme.CA(organization_name="Some Unknown Root")
ISCA_ROOT = trustme.CA(organization_name="Information Security Certification Authority")


def _chain(ca: trustme.CA, name: str) -> tuple[Certificate, ...]:
    """A real leaf and its root as the measurement summarises them (PEM included)."""
    leaf = ca.issue_cert(name)
    pems = [blob.bytes() for blob in leaf.cert_chain_pems] + [ca.cert_pem.bytes()]
    ders = [
        x509.load_pem_x509_certificate(p).public_bytes(serialization.Encoding.DER) for p in pems
    ]
    return tuple(summarize(d) for d in ders)


def _check_pems(pems: list[str], chain: list[dict[str, object]]) -> None:
    """Each PEM parses, and its DER's SHA-256 is the stored observation's, in order."""
    assert len(pems) == len(chain) > 0
    for text, stored in zip(pems, chain, strict=True):
        der = x509.load_pem_x509_certificate(text.encode()).public_bytes(serialization.Encoding.DER)
        assert hashlib.sha256(der).hexdigest() == stored["sha256"]


def test_both_mitm_rules_carry_the_chain_and_others_do_not() -> None:
    helper_ok = Controls(doh=(doh(PUBLIC),), helper=HelperReport(tcp_ok=True, tls_valid=True))
    cases = [
        ("tls.mitm_fingerprint", _chain(ISCA_ROOT, "www.example.test"), Controls()),
        ("tls.mitm_helper", _chain(UNKNOWN_ROOT, "www.example.test"), helper_ok),
        ("tls.invalid_no_control", _chain(UNKNOWN_ROOT, "www.example.test"), Controls()),
    ]
    for rule, chain, ctl in cases:
        got = classify(url(dns=(dns(PUBLIC),), tls=(handshake(*chain),)), ctl, FP)
        assert got.rule == rule
        if got.detail != "tls.mitm":
            assert "chain_pem" not in got.evidence
            continue
        _check_pems(got.evidence["chain_pem"], to_jsonable(chain))


@given(st.lists(st.sampled_from([*_chain(UNKNOWN_ROOT, "a.test"), *_chain(ISCA_ROOT, "b.test")]),
                min_size=1, max_size=4), st.booleans())  # fmt: skip
def test_a_mitm_verdict_always_shows_the_whole_chain_leaf_first(
    chain: list[Certificate], helper_valid: bool
) -> None:
    ctl = Controls(helper=HelperReport(tcp_ok=True, tls_valid=helper_valid))
    got = classify(url(dns=(dns(PUBLIC),), tls=(handshake(*chain),)), ctl, FP)
    if got.detail == "tls.mitm":
        assert got.evidence["chain_pem"] == [c.pem for c in chain]
    stored = to_jsonable(tuple(chain))
    assert all("pem" not in c for c in stored)  # observations keep hashes, never the PEM


@pytest.fixture(scope="module")
def world(ca: trustme.CA, ca_bundle: str) -> Iterator[World]:
    with running_world(ca, ca_bundle, ["ref.test", "intercepted.test"]) as w:
        yield w


def test_an_unknown_root_where_the_helper_sees_a_valid_chain(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tls.mitm_helper on the loopback: its chain_pem parses and matches the observation."""
    server = world.peer(TLSServer(UNKNOWN_ROOT, ["intercepted.test"]))
    # On the loopback the helper reaches the same server: trusting the unknown root stands in
    # for the helper, on an uncensored line, seeing the site's genuine, valid chain.
    both = tmp_path / "helper-trust.pem"
    both.write_bytes(Path(world.ca_bundle).read_bytes() + UNKNOWN_ROOT.cert_pem.bytes())
    settings = HelperSettings(
        world.resolver.address, str(both), parse_networks(["127.0.0.0/8"]), 2.0
    )
    helper = running_helper(settings)
    helper_url = world.bg.run(helper.__aenter__())
    try:
        targets = tmp_path / "t.toml"
        targets.write_text(
            '[[service]]\nname = "mitm"\ncategory = "social"\n'
            f'urls = ["https://intercepted.test:{server.port}/"]\n'
        )
        config = world.write_config(
            tmp_path / "p.toml", f"https://ref.test:{world.web.https_port}/"
        )
        db = str(tmp_path / "r.sqlite")
        args = ["run", "--config", str(config), "--targets", str(targets), "--db", db]
        assert main([*args, "--helper", helper_url, "--json"]) == 0
    finally:
        world.bg.run(helper.__aexit__(None, None, None))
    out = json.loads(capsys.readouterr().out)
    [row] = out["measurements"]
    assert (row["verdict"], row["detail"], row["rule"]) == (
        "blocked",
        "tls.mitm",
        "tls.mitm_helper",
    )
    assert main(["show", out["run_id"][:8], "--db", db, "--json"]) == 0
    [shown] = json.loads(capsys.readouterr().out)["rows"]
    assert main(["show", str(shown["id"]), "--db", db, "--json"]) == 0
    evidence = json.loads(capsys.readouterr().out)["evidence"]
    tls = [o for o in evidence["observations"] if o["kind"] == "TLSObservation"]
    ok = next(o for o in tls if o["failure"] is None)
    _check_pems(evidence["verdict_evidence"]["chain_pem"], ok["chain"])
    assert all("pem" not in c for o in tls for c in o["chain"])
