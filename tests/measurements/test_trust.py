"""The trust store is loaded once per context a sweep uses, and an offline sweep loads it
only for the contexts of the vantage check (preload_references)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from measurements import tls, trust
from tests.servers.tcp_servers import TLSServer

LOOPBACK, REFERENCE = "127.0.0.1", "ref.test"


def _bundle(ca: trustme.CA, directory: Path) -> str:
    """A bundle path of this test's own: the context cache is keyed by the path."""
    path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _built(bundle: str) -> set[tuple[bool, bool, tuple[str, ...]]]:
    return {key[1:] for key in trust._CONTEXTS if key[0] == bundle}


def test_references_load_the_bundle_twice_and_preload_the_rest(
    ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = _bundle(ca, tmp_path)
    trust.preload_references(bundle)
    assert _built(bundle) == {(True, True, ()), (True, True, trust.DEFAULT_ALPN)}
    trust.preload(bundle)
    verifying = {key for key in _built(bundle) if key[0]}
    assert len(verifying) == 4  # and the unverified ones, which load no bundle


def test_references_report_a_bad_bundle(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        trust.preload_references(str(tmp_path / "absent.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(ssl.SSLError):
        trust.preload_references(str(junk))


async def test_a_reference_handshake_needs_no_other_context(ca: trustme.CA, tmp_path: Path) -> None:
    """What the vantage check does (a checked handshake with the reference's name as SNI)
    builds nothing on the loop after preload_references."""
    bundle = _bundle(ca, tmp_path)
    trust.preload_references(bundle)
    built = _built(bundle)
    async with TLSServer(ca, [REFERENCE]) as server:
        obs = await tls.handshake(LOOPBACK, server.port, REFERENCE, timeout=5.0, ca_bundle=bundle)
    assert obs.cert_valid is True
    assert _built(bundle) == built
