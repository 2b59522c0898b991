"""Readable summaries of the certificates a peer presented.

Validation itself is OpenSSL's, during the handshake (measurements.tls), so a verdict on a
chain matches what the volunteer's browser would have said.
"""

from __future__ import annotations

import hashlib
import ssl
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from measurements.observations import Certificate

# A certificate is seen again and again: by the TLS step and the page fetch of one input, by
# its controls, and across a sweep wherever a site, a CDN or an interceptor shows the same one.
# Parsing it costs more than the rest of a handshake's Python; a summary is frozen, so one
# parse per distinct DER serves them all. Bounded: a long list shows many certificates once.
_DISTINCT_CERTIFICATES = 256


@lru_cache(maxsize=_DISTINCT_CERTIFICATES)
def summarize(der: bytes) -> Certificate:
    """The readable summary of one DER certificate (parsed once per distinct DER)."""
    cert = x509.load_der_x509_certificate(der)
    try:
        san_ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = tuple(
            [str(n) for n in san_ext.get_values_for_type(x509.DNSName)]
            + [str(n) for n in san_ext.get_values_for_type(x509.IPAddress)]
        )
    except x509.ExtensionNotFound:
        sans = ()
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=sans,
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        sha256=hashlib.sha256(der).hexdigest(),
        spki_sha256=hashlib.sha256(
            cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).hexdigest(),
        pem=pem(der),
    )


def pem(der: bytes) -> str:
    """PEM text of a DER certificate (for evidence a reader can feed to openssl).

    The DER bytes as they came, not re-encoded: the PEM's SHA-256 is the observation's, and
    a certificate cryptography cannot parse has one too.
    """
    return ssl.DER_cert_to_PEM_cert(der)
