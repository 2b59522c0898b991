"""Known signs of censorship that are evidence by themselves (blockpages, sinkholes, roots)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from measurements.observations import HTTPHop

_MATCHES = ("contains", "prefix", "full", "regexp")


@dataclass(frozen=True, slots=True)
class HTTPFingerprint:
    """A blockpage pattern: in the body or a header, matched one of four ways."""

    name: str
    location: str  # "body" or "header.<name>"
    match: str
    pattern: str

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


@dataclass(frozen=True, slots=True)
class Fingerprints:
    """Every known sign, as the classifier consults them."""

    dns_ips: frozenset[str] = frozenset()
    dns_names: tuple[tuple[str, str], ...] = ()  # (ip, fingerprint name)
    http: tuple[HTTPFingerprint, ...] = ()
    issuers: tuple[tuple[str, str], ...] = ()  # (pattern in the issuer, fingerprint name)

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

    def issuer_match(self, issuer: str) -> str | None:
        """The name of the interception root an issuer string names, if any."""
        for pattern, name in self.issuers:
            if pattern.lower() in issuer.lower():
                return name
        return None


def parse(data: dict[str, list[dict[str, str]]]) -> Fingerprints:
    """Fingerprints from the parsed TOML table (validated: a bad bundled file must fail loudly)."""
    http = []
    for entry in data.get("http", []):
        if entry["match"] not in _MATCHES:
            raise ValueError(f"fingerprint {entry['name']}: unknown match {entry['match']!r}")
        if entry["match"] == "regexp":
            re.compile(entry["pattern"])
        http.append(
            HTTPFingerprint(entry["name"], entry["location"], entry["match"], entry["pattern"])
        )
    dns_names = tuple((e["ip"], e["name"]) for e in data.get("dns", []))
    return Fingerprints(
        dns_ips=frozenset(ip for ip, _ in dns_names),
        dns_names=dns_names,
        http=tuple(http),
        issuers=tuple((e["pattern"], e["name"]) for e in data.get("issuer", [])),
    )


@cache
def load_bundled() -> Fingerprints:
    """The fingerprints shipped with the probe (read once: call it before the loop starts)."""
    text = (
        resources.files("probe.classify").joinpath("fingerprints.toml").read_text(encoding="utf-8")
    )
    return parse(tomllib.loads(text))
