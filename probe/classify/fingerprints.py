"""Known signs of censorship that are evidence by themselves (blockpages, sinkholes, roots)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from measurements.observations import Certificate, HTTPHop

_MATCHES = ("contains", "prefix", "full", "regexp")


@dataclass(frozen=True, slots=True)
class HTTPFingerprint:
    """A blockpage pattern: in the body or a header, matched one of four ways."""

    name: str
    location: str  # "body" or "header.<name>"
    match: str
    pattern: str
    operator: str = ""  # a look-alike's: who shows such pages (a CDN, a WAF)
    source: str = ""

    def matches(self, hop: HTTPHop) -> bool:
        """True when this hop shows the pattern."""
        if self.location == "body":
            texts = [hop.body_head.decode("utf-8", errors="replace")]
        else:
            wanted = self.location.removeprefix("header.").lower()
            texts = [v for k, v in hop.headers if k.lower() == wanted]
        return any(self._match_text(t) for t in texts)

    def _match_text(self, text: str) -> bool:
        if self.match == "contains":
            return self.pattern in text
        if self.match == "prefix":
            return text.startswith(self.pattern)
        if self.match == "full":
            return text == self.pattern
        return re.search(self.pattern, text) is not None


def dn_attributes(dn: str) -> dict[str, set[str]]:
    """An RFC 4514 name's attributes ("CN=a,O=b\\, c" -> CN: {a}, O: {b, c}), lowercased values."""
    out: dict[str, set[str]] = {}
    for rdn in re.split(r"(?<!\\),", dn):
        for part in re.split(r"(?<!\\)\+", rdn):
            key, sep, value = part.partition("=")
            if sep:
                text = re.sub(r"\\(.)", r"\1", value).strip().lower()
                out.setdefault(key.strip().upper(), set()).add(text)
    return out


@dataclass(frozen=True, slots=True)
class InterceptionCA:
    """A national or commercial interception CA: known by name, key or certificate."""

    name: str
    names: tuple[str, ...] = ()  # a CN or O it carries, matched whole (case aside)
    country: str | None = None  # the C= it also carries, where the name alone is common
    sha256: frozenset[str] = frozenset()  # certificates of it, DER SHA-256
    spki_sha256: frozenset[str] = frozenset()  # its keys, SubjectPublicKeyInfo SHA-256
    source: str = ""

    def _named(self, dn: str) -> bool:
        attrs = dn_attributes(dn)
        named = attrs.get("CN", set()) | attrs.get("O", set())
        if not named & {n.lower() for n in self.names}:
            return False
        return self.country is None or self.country.lower() in attrs.get("C", set())

    def how(self, cert: Certificate) -> str | None:
        """How ``cert`` shows this CA: it is the CA ("certificate", "key", "subject"), or the
        CA issued it ("issuer"); None when it does not."""
        if cert.sha256 in self.sha256:
            return "certificate"
        if cert.spki_sha256 and cert.spki_sha256 in self.spki_sha256:
            return "key"
        if self._named(cert.subject):
            return "subject"
        if self._named(cert.issuer):
            return "issuer"
        return None


@dataclass(frozen=True, slots=True)
class InterceptionMatch:
    """Where a presented chain shows a known interception CA."""

    fingerprint: str
    position: int  # 0: the leaf
    how: str  # certificate, key, subject or issuer
    certificate: Certificate
    source: str


@dataclass(frozen=True, slots=True)
class Fingerprints:
    """Every known sign, as the classifier consults them."""

    dns_ips: frozenset[str] = frozenset()
    dns_names: tuple[tuple[str, str], ...] = ()  # (ip, fingerprint name)
    http: tuple[HTTPFingerprint, ...] = ()
    interception: tuple[InterceptionCA, ...] = ()
    # Pages that look like blocking and are not (a CDN's bot challenge, a WAF's denial): a
    # hop showing one is never called blocked.
    lookalikes: tuple[HTTPFingerprint, ...] = ()

    def dns_match(self, addresses: tuple[str, ...]) -> str | None:
        """The name of the sinkhole fingerprint an answer hits, if any."""
        for ip, name in self.dns_names:
            if ip in addresses:
                return name
        return None

    def http_match(self, hop: HTTPHop) -> str | None:
        """The name of the blockpage fingerprint a hop matches, if any."""
        for fp in self.http:
            if fp.matches(hop):
                return fp.name
        return None

    def lookalike_match(self, hop: HTTPHop) -> HTTPFingerprint | None:
        """The look-alike (not censorship) a hop shows, if any."""
        return next((fp for fp in self.lookalikes if fp.matches(hop)), None)

    def interception_match(self, chain: tuple[Certificate, ...]) -> InterceptionMatch | None:
        """The first certificate of the chain, leaf to root, that shows a known interception
        CA (being it, by certificate, key or name, or issued by it), if any."""
        for position, cert in enumerate(chain):
            for ca in self.interception:
                how = ca.how(cert)
                if how is not None:
                    return InterceptionMatch(ca.name, position, how, cert, ca.source)
        return None


def parse(data: dict[str, list[dict[str, Any]]]) -> Fingerprints:
    """Fingerprints from the parsed TOML table (validated: a bad bundled file must fail loudly)."""
    http = [_http(entry) for entry in data.get("http", [])]
    lookalikes = [_http(entry) for entry in data.get("lookalike", [])]
    for fp in lookalikes:
        if not (fp.operator and fp.source):
            raise ValueError(f"fingerprint {fp.name}: a look-alike names its operator and source")
    dns_names = tuple((e["ip"], e["name"]) for e in data.get("dns", []))
    return Fingerprints(
        dns_ips=frozenset(ip for ip, _ in dns_names),
        dns_names=dns_names,
        http=tuple(http),
        interception=tuple(_interception(e) for e in data.get("interception", [])),
        lookalikes=tuple(lookalikes),
    )


def _http(entry: dict[str, Any]) -> HTTPFingerprint:
    if entry["match"] not in _MATCHES:
        raise ValueError(f"fingerprint {entry['name']}: unknown match {entry['match']!r}")
    if entry["match"] == "regexp":
        re.compile(entry["pattern"])
    return HTTPFingerprint(
        entry["name"], entry["location"], entry["match"], entry["pattern"],
        entry.get("operator", ""), entry.get("source", ""),
    )  # fmt: skip


def _interception(entry: dict[str, Any]) -> InterceptionCA:
    hexes = ("sha256", "spki_sha256")
    for key in hexes:
        for value in entry.get(key, []):
            if not re.fullmatch(r"[0-9a-f]{64}", value):
                raise ValueError(f"fingerprint {entry['name']}: {key} {value!r} is not SHA-256 hex")
    if not (entry.get("names") or entry.get("sha256") or entry.get("spki_sha256")):
        raise ValueError(f"fingerprint {entry['name']}: names, sha256 or spki_sha256 needed")
    if not entry.get("source"):
        raise ValueError(f"fingerprint {entry['name']}: every interception CA cites a source")
    return InterceptionCA(
        entry["name"], tuple(entry.get("names", ())), entry.get("country"),
        frozenset(entry.get("sha256", ())), frozenset(entry.get("spki_sha256", ())),
        entry["source"],
    )  # fmt: skip


@cache
def load_bundled() -> Fingerprints:
    """The fingerprints shipped with the probe (read once: call it before the loop starts)."""
    text = (
        resources.files("probe.classify").joinpath("fingerprints.toml").read_text(encoding="utf-8")
    )
    return parse(tomllib.loads(text))
