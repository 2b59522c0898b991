"""Known signs of censorship that are evidence by themselves (blockpages, sinkholes, roots)."""

from __future__ import annotations

import html
import re
import tomllib
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from measurements.observations import Certificate, HTTPHop

_MATCHES = ("contains", "prefix", "full", "regexp")
_CONFIDENCES = ("high", "low")
# Whose interception a CA is: a state's ("national": a censor's, wherever it is seen), or a
# product's ("commercial": antivirus, a company's proxy; a censor's only where it is aimed).
INTERCEPTION_KINDS = ("national", "commercial")
# A notice page is short: a phrase counts only in a page read whole and no longer than this.
# A news article that quotes a notice ("the page said: access restricted") is tens of KiB.
NOTICE_MAX_BYTES = 32 * 1024
_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)


def page_text(hop: HTTPHop) -> str:
    """A page's words as a reader sees them: title and body without markup, entities
    decoded, whitespace collapsed, case folded (what a phrase is matched against)."""
    body = hop.body_head.decode("utf-8", errors="replace")
    text = html.unescape(_TAG.sub(" ", f"{hop.title or ''} {body}"))
    return " ".join(text.split()).casefold()


def notice_sized(hop: HTTPHop) -> bool:
    """Whether the page was read whole and is as short as a notice page is."""
    return (
        hop.body_length is not None and hop.body_length <= NOTICE_MAX_BYTES and not (hop.truncated)
    )


@dataclass(frozen=True, slots=True)
class HTTPFingerprint:
    """A blockpage pattern: in the body or a header, matched one of four ways."""

    name: str
    location: str  # "body" or "header.<name>"
    match: str
    pattern: str
    operator: str = ""  # a look-alike's or filtering software's: who shows such pages
    source: str = ""
    kind: str = "blockpage"  # blockpage | software | phrase | lookalike
    confidence: str = "high"  # a phrase's: "low" is never evidence by itself

    def matches(self, hop: HTTPHop) -> bool:
        """True when this hop shows the pattern."""
        if self.location == "text":  # a phrase: in a notice-sized page's words
            return notice_sized(hop) and self._match_text(page_text(hop))
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


# Every chain of a sweep is held against every known interception CA: the same issuers and
# subjects come back input after input, so each name is parsed once.
@lru_cache(maxsize=1024)
def _dn_names(dn: str) -> tuple[frozenset[str], frozenset[str]]:
    """A name's CN and O values, and its C values (lowercased)."""
    attrs = dn_attributes(dn)
    return frozenset(attrs.get("CN", set()) | attrs.get("O", set())), frozenset(attrs.get("C", ()))


@cache
def _lowered(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(n.lower() for n in names)


@dataclass(frozen=True, slots=True)
class InterceptionCA:
    """A national or commercial interception CA: known by name, key or certificate."""

    name: str
    names: tuple[str, ...] = ()  # a CN or O it carries, matched whole (case aside)
    country: str | None = None  # the C= it also carries, where the name alone is common
    sha256: frozenset[str] = frozenset()  # certificates of it, DER SHA-256
    spki_sha256: frozenset[str] = frozenset()  # its keys, SubjectPublicKeyInfo SHA-256
    source: str = ""
    kind: str = "national"  # one of INTERCEPTION_KINDS

    def _named(self, dn: str) -> bool:
        named, countries = _dn_names(dn)
        if named.isdisjoint(_lowered(self.names)):
            return False
        return self.country is None or self.country.lower() in countries

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
    kind: str = "national"  # the CA's: national or commercial


@dataclass(frozen=True, slots=True)
class Fingerprints:
    """Every known sign, as the classifier consults them."""

    dns_ips: frozenset[str] = frozenset()
    dns_names: tuple[tuple[str, str], ...] = ()  # (ip, fingerprint name)
    http: tuple[HTTPFingerprint, ...] = ()
    interception: tuple[InterceptionCA, ...] = ()
    # Stock pages of filtering software (squid's ERR_ACCESS_DENIED, a FortiGate's web
    # filter page): a censor's or an operator's filter, unless the site itself sent it.
    software: tuple[HTTPFingerprint, ...] = ()
    # Wording of notice pages in general, each with a confidence: "high" is evidence by
    # itself, "low" only next to a control that saw another page.
    phrases: tuple[HTTPFingerprint, ...] = ()
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
        """The name of the blockpage fingerprint a hop matches, if any (a censor's page,
        filtering software's, or a high-confidence phrase)."""
        found = self.blockpage_match(hop)
        return found.name if found is not None else None

    def blockpage_match(self, hop: HTTPHop) -> HTTPFingerprint | None:
        """The first sign a hop shows that is evidence by itself: a censor's own page, then
        filtering software's, then a high-confidence phrase."""
        high = (p for p in self.phrases if p.confidence == "high")
        return next((fp for fp in (*self.http, *self.software, *high) if fp.matches(hop)), None)

    def hint_match(self, hop: HTTPHop) -> HTTPFingerprint | None:
        """The low-confidence phrase a hop shows, if any: a hint, never evidence alone."""
        low = (p for p in self.phrases if p.confidence == "low")
        return next((fp for fp in low if fp.matches(hop)), None)

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
                    return InterceptionMatch(ca.name, position, how, cert, ca.source, ca.kind)
        return None


def parse(data: dict[str, list[dict[str, Any]]]) -> Fingerprints:
    """Fingerprints from the parsed TOML table (validated: a bad bundled file must fail loudly)."""
    http = [_http(entry) for entry in data.get("http", [])]
    lookalikes = [_http(entry, "lookalike") for entry in data.get("lookalike", [])]
    software = [_http(entry, "software") for entry in data.get("software", [])]
    phrases = [_phrase(entry) for entry in data.get("phrase", [])]
    for fp in (*lookalikes, *software):
        if not (fp.operator and fp.source):
            raise ValueError(f"fingerprint {fp.name}: a {fp.kind} names its operator and source")
    dns_names = tuple((e["ip"], e["name"]) for e in data.get("dns", []))
    return Fingerprints(
        dns_ips=frozenset(ip for ip, _ in dns_names),
        dns_names=dns_names,
        http=tuple(http),
        interception=tuple(_interception(e) for e in data.get("interception", [])),
        lookalikes=tuple(lookalikes),
        software=tuple(software),
        phrases=tuple(phrases),
    )


def _http(entry: dict[str, Any], kind: str = "blockpage") -> HTTPFingerprint:
    if entry["match"] not in _MATCHES:
        raise ValueError(f"fingerprint {entry['name']}: unknown match {entry['match']!r}")
    if entry["match"] == "regexp":
        re.compile(entry["pattern"])
    return HTTPFingerprint(
        entry["name"], entry["location"], entry["match"], entry["pattern"],
        entry.get("operator", ""), entry.get("source", ""), kind,
    )  # fmt: skip


def _phrase(entry: dict[str, Any]) -> HTTPFingerprint:
    """A notice's wording, matched in the page's words (``page_text``), case folded."""
    name = entry["name"]
    if entry.get("confidence") not in _CONFIDENCES:
        raise ValueError(f"fingerprint {name}: a phrase's confidence is one of {_CONFIDENCES}")
    if not (entry.get("source") and entry.get("language")):
        raise ValueError(f"fingerprint {name}: a phrase names its language and source")
    match = entry.get("match", "contains")
    if match not in ("contains", "regexp"):
        raise ValueError(f"fingerprint {name}: a phrase matches by contains or regexp")
    pattern = entry["pattern"].casefold() if match == "contains" else entry["pattern"]
    if match == "regexp":
        re.compile(pattern)
    return HTTPFingerprint(
        name, "text", match, pattern, entry.get("operator", ""), entry["source"], "phrase",
        entry["confidence"],
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
    kind = entry.get("kind", "national")
    if kind not in INTERCEPTION_KINDS:
        raise ValueError(
            f"fingerprint {entry['name']}: kind {kind!r} is not one of {INTERCEPTION_KINDS}"
        )
    return InterceptionCA(
        entry["name"], tuple(entry.get("names", ())), entry.get("country"),
        frozenset(entry.get("sha256", ())), frozenset(entry.get("spki_sha256", ())),
        entry["source"], kind,
    )  # fmt: skip


@cache
def load_bundled() -> Fingerprints:
    """The fingerprints shipped with the probe (read once: call it before the loop starts)."""
    text = (
        resources.files("probe.classify").joinpath("fingerprints.toml").read_text(encoding="utf-8")
    )
    return parse(tomllib.loads(text))
