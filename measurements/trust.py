"""TLS client contexts, built once per setting and shared by the TLS, HTTP and DoH primitives.

Building a verifying context reads the CA bundle from disk: blocking I/O that must not run
on the event loop while measurements are in flight (it would skew their timings). The probe
calls ``preload`` before the loop starts; a context first needed later is built in a thread.
"""

from __future__ import annotations

import asyncio
import ssl

_Key = tuple[str | None, bool, bool, tuple[str, ...]]
_CONTEXTS: dict[_Key, ssl.SSLContext] = {}

DEFAULT_ALPN: tuple[str, ...] = ("h2", "http/1.1")


def _key(ca_bundle: str | None, verify: bool, check_hostname: bool, alpn: tuple[str, ...]) -> _Key:
    if not verify:
        ca_bundle, check_hostname = None, False  # trust anchors are irrelevant unverified
    return (ca_bundle, verify, check_hostname, alpn)


def _build(key: _Key) -> ssl.SSLContext:
    ca_bundle, verify, check_hostname, alpn = key
    if verify:
        # cafile=None loads the system's trust store, as a browser on this machine would.
        ctx = ssl.create_default_context(cafile=ca_bundle)
        ctx.check_hostname = check_hostname
    else:
        # For same-address controls: reach the server whatever certificate it shows.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def context(
    ca_bundle: str | None,
    *,
    verify: bool = True,
    check_hostname: bool = True,
    alpn: tuple[str, ...] = (),
) -> ssl.SSLContext:
    """The cached client context for these settings (built now if missing: blocking)."""
    key = _key(ca_bundle, verify, check_hostname, alpn)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        ctx = _CONTEXTS[key] = _build(key)
    return ctx


async def context_async(
    ca_bundle: str | None,
    *,
    verify: bool = True,
    check_hostname: bool = True,
    alpn: tuple[str, ...] = (),
) -> ssl.SSLContext:
    """The cached context, built in a thread when it was not preloaded."""
    ctx = _CONTEXTS.get(_key(ca_bundle, verify, check_hostname, alpn))
    if ctx is not None:
        return ctx
    return await asyncio.to_thread(
        context, ca_bundle, verify=verify, check_hostname=check_hostname, alpn=alpn
    )


def preload_references(ca_bundle: str | None) -> None:
    """Build the contexts the vantage check uses (verifying, name-checking; with and without
    ALPN); raises ssl.SSLError/OSError for a bad bundle.

    Each verifying context loads the whole trust store (about 50 ms for the system's 144
    anchors under OpenSSL 3): an offline sweep needs only these two, and the sweep builds
    the rest with ``preload`` once the vantage answered, before the first target.
    """
    for alpn in ((), DEFAULT_ALPN):
        context(ca_bundle, alpn=alpn)


def preload(ca_bundle: str | None) -> None:
    """Build every context a sweep uses; raises ssl.SSLError/OSError for a bad bundle."""
    for verify in (True, False):
        for check_hostname in (True, False):
            for alpn in ((), DEFAULT_ALPN):
                context(ca_bundle, verify=verify, check_hostname=check_hostname, alpn=alpn)
