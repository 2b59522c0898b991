"""measurements.tls against real loopback peers: good and bad certificates, censors, silence."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from pathlib import Path

import pytest
import trustme

from measurements import tls, trust
from measurements.failures import Failure
from measurements.observations import TLSObservation
from tests.servers.tcp_servers import (
    ClosedPort,
    DroppingPort,
    EOFAfterFirstData,
    ResetAfterFirstData,
    SilentListener,
    SNIFilter,
    TLSServer,
)

LOOPBACK = "127.0.0.1"
TARGET = "target.test"
INNOCUOUS = "innocuous.test"
ROGUE_ISSUER = "Information Security Certification Authority"


def assert_handshake_failed(obs: TLSObservation, failure: Failure, operation: str) -> None:
    """A failed connect or handshake: a failure and where, no certificate verdict, no chain."""
    assert obs.failure == failure
    assert obs.operation == operation
    assert obs.cert_valid is None
    assert obs.cert_failure is None
    assert obs.chain == ()
    assert obs.version is None
    assert obs.error is None  # only unknown_failure carries one


async def test_valid_certificate(ca: trustme.CA, ca_bundle: str) -> None:
    async with TLSServer(ca, [TARGET]) as server:
        obs = await tls.handshake(LOOPBACK, server.port, TARGET, timeout=2.0, ca_bundle=ca_bundle)
    assert obs.failure is None and obs.operation is None and obs.error is None
    assert obs.cert_valid is True
    assert obs.cert_failure is None
    assert (obs.ip, obs.port, obs.sni) == (LOOPBACK, server.port, TARGET)
    assert obs.version in ("TLSv1.2", "TLSv1.3")
    assert obs.alpn == "http/1.1"  # the server offers only that of the client's h2, http/1.1
    assert len(obs.chain) >= 1
    leaf = obs.chain[0]
    assert leaf.sans == (TARGET,)
    assert f"CN={TARGET}" in leaf.subject
    assert "Probe Test Root" in leaf.issuer
    assert len(leaf.sha256) == 64
    assert obs.connect_ms is not None and obs.handshake_ms is not None
    assert obs.connect_ms + obs.handshake_ms <= obs.duration_ms + 1e-6
    assert server.accepted == 1


async def test_interception_keeps_the_forged_chain(rogue_ca: trustme.CA, ca_bundle: str) -> None:
    async with TLSServer(rogue_ca, [TARGET]) as interceptor:
        obs = await tls.handshake(
            LOOPBACK, interceptor.port, TARGET, timeout=2.0, ca_bundle=ca_bundle
        )
    # The handshake went as far as OpenSSL's verdict: not a failure, but not valid either.
    assert obs.failure is None and obs.operation is None
    assert obs.cert_valid is False
    assert obs.cert_failure == Failure.SSL_UNKNOWN_AUTHORITY
    assert obs.chain, "the chain that failed verification is the evidence"
    assert ROGUE_ISSUER in obs.chain[0].issuer
    assert obs.chain[0].sans == (TARGET,)
    assert obs.handshake_ms is not None
    # Read from the one handshake: no second ClientHello with the target's SNI.
    assert interceptor.accepted == 1


async def test_untrusted_by_the_system_store(ca: trustme.CA) -> None:
    # Without --ca-bundle the system's roots apply, and they do not include the test root.
    async with TLSServer(ca, [TARGET]) as server:
        obs = await tls.handshake(LOOPBACK, server.port, TARGET, timeout=2.0)
    assert obs.cert_valid is False
    assert obs.cert_failure == Failure.SSL_UNKNOWN_AUTHORITY
    assert "Probe Test Root" in obs.chain[0].issuer


async def test_wrong_name(ca: trustme.CA, ca_bundle: str) -> None:
    async with TLSServer(ca, ["other.test"], default_name="other.test") as server:
        obs = await tls.handshake(LOOPBACK, server.port, TARGET, timeout=2.0, ca_bundle=ca_bundle)
    assert obs.failure is None
    assert obs.cert_valid is False
    assert obs.cert_failure == Failure.SSL_INVALID_HOSTNAME
    assert obs.chain[0].sans == ("other.test",)


async def test_expired_certificate(ca: trustme.CA, ca_bundle: str) -> None:
    now = datetime.datetime.now(datetime.UTC)
    expired = TLSServer(
        ca,
        [TARGET],
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    async with expired as server:
        obs = await tls.handshake(LOOPBACK, server.port, TARGET, timeout=2.0, ca_bundle=ca_bundle)
    assert obs.failure is None
    assert obs.cert_valid is False
    assert obs.cert_failure == Failure.SSL_INVALID_CERTIFICATE
    not_after = datetime.datetime.fromisoformat(obs.chain[0].not_after)
    assert not_after < now


async def test_unchecked_control_handshake(rogue_ca: trustme.CA) -> None:
    # The innocuous-SNI control only asks "does this IP answer TLS": no verdict on the chain.
    async with TLSServer(rogue_ca, [TARGET]) as server:
        obs = await tls.handshake(
            LOOPBACK, server.port, TARGET, timeout=2.0, check_certificate=False
        )
    assert obs.failure is None
    assert obs.cert_valid is None and obs.cert_failure is None
    assert ROGUE_ISSUER in obs.chain[0].issuer
    assert obs.version is not None


async def test_no_sni_gets_the_default_certificate(ca: trustme.CA, ca_bundle: str) -> None:
    async with TLSServer(ca, [TARGET]) as server:
        unnamed = await tls.handshake(LOOPBACK, server.port, None, timeout=2.0, ca_bundle=ca_bundle)
        checked = await tls.handshake(
            LOOPBACK, server.port, None, timeout=2.0, ca_bundle=ca_bundle, verify_name=TARGET
        )
    # No SNI and no name: the chain alone is validated.
    assert unnamed.sni is None
    assert unnamed.cert_valid is True
    assert unnamed.chain[0].sans == ("default.test",)
    # No SNI, but a name to check: the default certificate is not the target's.
    assert checked.cert_valid is False
    assert checked.cert_failure == Failure.SSL_INVALID_HOSTNAME


async def test_verify_name_apart_from_sni(ca: trustme.CA, ca_bundle: str) -> None:
    async with TLSServer(ca, [TARGET, INNOCUOUS]) as server:
        other = await tls.handshake(
            LOOPBACK, server.port, INNOCUOUS, timeout=2.0, ca_bundle=ca_bundle, verify_name=TARGET
        )
        same = await tls.handshake(
            LOOPBACK, server.port, TARGET, timeout=2.0, ca_bundle=ca_bundle, verify_name=TARGET
        )
    assert other.chain[0].sans == (INNOCUOUS,)
    assert (other.cert_valid, other.cert_failure) == (False, Failure.SSL_INVALID_HOSTNAME)
    assert (same.cert_valid, same.cert_failure) == (True, None)


async def test_verify_name_against_a_wildcard(ca: trustme.CA, ca_bundle: str) -> None:
    async with TLSServer(ca, [], default_name="*.wild.test") as server:
        covered = await tls.handshake(
            LOOPBACK, server.port, None, timeout=2.0, ca_bundle=ca_bundle, verify_name="a.wild.test"
        )
        deeper = await tls.handshake(
            LOOPBACK,
            server.port,
            None,
            timeout=2.0,
            ca_bundle=ca_bundle,
            verify_name="a.b.wild.test",
        )
    assert covered.chain[0].sans == ("*.wild.test",)
    assert (covered.cert_valid, covered.cert_failure) == (True, None)
    assert (deeper.cert_valid, deeper.cert_failure) == (False, Failure.SSL_INVALID_HOSTNAME)


@pytest.mark.parametrize(
    ("name", "sans", "matches"),
    [
        ("a.example.test", ("a.example.test",), True),
        ("A.Example.Test.", ("a.example.test",), True),
        ("a.example.test", ("*.example.test",), True),
        ("a.b.example.test", ("*.example.test",), False),
        ("example.test", ("*.example.test",), False),
        ("b.example.test", ("a.example.test",), False),
        ("127.0.0.1", ("127.0.0.1",), True),
        ("127.0.0.1", ("127.0.0.2", "*.0.0.1"), False),
        ("a.example.test", (), False),
    ],
)
def test_name_matching(name: str, sans: tuple[str, ...], matches: bool) -> None:
    assert tls._name_matches(name, sans) is matches


async def test_alert_is_a_failed_handshake(ca: trustme.CA, ca_bundle: str) -> None:
    async with TLSServer(ca, [INNOCUOUS], reject_unknown_sni=True) as server:
        obs = await tls.handshake(LOOPBACK, server.port, TARGET, timeout=2.0, ca_bundle=ca_bundle)
    assert_handshake_failed(obs, Failure.SSL_FAILED_HANDSHAKE, "tls_handshake")
    assert obs.connect_ms is not None and obs.handshake_ms is not None


async def test_reset_after_client_hello(reset_peer: ResetAfterFirstData) -> None:
    obs = await tls.handshake(LOOPBACK, reset_peer.port, TARGET, timeout=2.0)
    assert_handshake_failed(obs, Failure.CONNECTION_RESET, "tls_handshake")
    assert obs.connect_ms is not None


async def test_silence_after_client_hello(silent_listener: SilentListener) -> None:
    obs = await tls.handshake(LOOPBACK, silent_listener.port, TARGET, timeout=0.5)
    assert_handshake_failed(obs, Failure.GENERIC_TIMEOUT, "tls_handshake")
    assert obs.handshake_ms is not None and 450 <= obs.handshake_ms < 1500


async def test_eof_after_client_hello(eof_peer: EOFAfterFirstData) -> None:
    obs = await tls.handshake(LOOPBACK, eof_peer.port, TARGET, timeout=2.0)
    assert_handshake_failed(obs, Failure.EOF, "tls_handshake")


async def test_refused_is_a_connect_failure(closed_port: ClosedPort) -> None:
    obs = await tls.handshake(LOOPBACK, closed_port.port, TARGET, timeout=2.0)
    assert_handshake_failed(obs, Failure.CONNECTION_REFUSED, "connect")
    assert obs.connect_ms is None and obs.handshake_ms is None


async def test_dropped_syn_is_a_connect_timeout(dropping_port: DroppingPort) -> None:
    obs = await tls.handshake(LOOPBACK, dropping_port.port, TARGET, timeout=0.5)
    assert_handshake_failed(obs, Failure.GENERIC_TIMEOUT, "connect")
    assert obs.connect_ms is None


@pytest.mark.parametrize(
    ("action", "failure"),
    [
        ("reset", Failure.CONNECTION_RESET),
        ("drop", Failure.GENERIC_TIMEOUT),
        ("eof", Failure.EOF),
    ],
)
async def test_sni_filtering(ca: trustme.CA, ca_bundle: str, action: str, failure: Failure) -> None:
    async with (
        TLSServer(ca, [TARGET, INNOCUOUS]) as upstream,
        SNIFilter(upstream.port, {TARGET}, action) as censor,  # type: ignore[arg-type]
    ):
        blocked = await tls.handshake(
            LOOPBACK, censor.port, TARGET, timeout=0.5, ca_bundle=ca_bundle
        )
        control = await tls.handshake(
            LOOPBACK, censor.port, INNOCUOUS, timeout=2.0, check_certificate=False
        )
    # The same IP:port: the target's SNI fails during the handshake...
    assert_handshake_failed(blocked, failure, "tls_handshake")
    # ...while an innocuous SNI completes, through the very same filter.
    assert control.failure is None
    assert control.cert_valid is None
    assert control.chain[0].sans == (INNOCUOUS,)
    assert censor.matched == 1
    assert upstream.accepted == 1  # only the control got through


async def test_filter_relays_a_whole_exchange(ca: trustme.CA, ca_bundle: str) -> None:
    # The peers themselves: an innocuous request crosses the filter and gets the page.
    context = ssl.create_default_context(cafile=ca_bundle)
    async with (
        TLSServer(ca, [TARGET, INNOCUOUS]) as upstream,
        SNIFilter(upstream.port, {TARGET}, "reset") as censor,
    ):
        async with asyncio.timeout(5.0):
            reader, writer = await asyncio.open_connection(
                LOOPBACK, censor.port, ssl=context, server_hostname=INNOCUOUS
            )
            writer.write(f"GET / HTTP/1.1\r\nHost: {INNOCUOUS}\r\n\r\n".encode())
            response = await reader.read()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(f"hello from {INNOCUOUS}\n".encode())
    assert censor.matched == 0


async def test_hostname_is_refused_before_any_traffic() -> None:
    with pytest.raises(ValueError):
        await tls.handshake("localhost", 443, "localhost", timeout=0.5)


def test_preload_reports_a_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        trust.preload(str(tmp_path / "absent.pem"))


async def test_preloaded_contexts_are_reused(ca: trustme.CA, ca_bundle: str) -> None:
    trust.preload(ca_bundle)
    built = dict(trust._CONTEXTS)
    async with TLSServer(ca, [TARGET]) as server:
        obs = await tls.handshake(LOOPBACK, server.port, TARGET, timeout=2.0, ca_bundle=ca_bundle)
        unchecked = await tls.handshake(
            LOOPBACK, server.port, TARGET, timeout=2.0, check_certificate=False
        )
    assert obs.cert_valid is True and unchecked.failure is None
    assert trust._CONTEXTS == built  # no bundle loaded on the loop during the handshakes
