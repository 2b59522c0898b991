"""What a target list holds: services, their inputs, and the errors a list can have.

Exception tree (both are ValueErrors, so bad input never looks like a crash)::

    ValueError
     ├── TargetError    one problem at one place in one file
     └── TargetErrors   every problem found while loading, raised together

The checks on URLs, hostnames and endpoints live here so the TOML loader and the
Citizen Lab importer judge inputs by the same rules.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import idna

from measurements.addresses import is_ip, parse_address, split_host_port

# A hand-written list may only use the categories of docs/architecture.md (Settings). "other"
# exists because a Citizen Lab import keeps every code it was asked for (news, politics...);
# only the CSV importer may produce it.
CATEGORIES: frozenset[str] = frozenset({"social", "messaging"})
IMPORT_CATEGORIES: frozenset[str] = CATEGORIES | {"other"}

InputKind = Literal["url", "endpoint"]

# Names end up in exports and on command lines: keep them to a shell- and URL-safe alphabet.
# Inner "--" stays allowed because punycode hostnames ("xn--...") become names.
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
# Underscores are not legal in hostnames but appear in real DNS names; refusing them would
# reject lists that resolvers handle fine.
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


# Messages quote what the input said; a 1 MB name must not make a 1 MB message.
QUOTE_LIMIT = 80


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """repr() of a value from the input, cut to ``limit`` characters ending in "..."."""
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit]  # repr of the whole of a huge string would be built for nothing
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A bare TCP endpoint: a hostname or IP literal and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse "host:port" or "[v6]:port"; raises ValueError saying what is wrong."""
        if any(ch.isspace() for ch in text):
            raise ValueError(f"{quoted(text)} contains whitespace")
        host, port = split_host_port(text, show=quoted)
        if text.startswith("["):
            try:
                host = str(ipaddress.IPv6Address(host))
            except ValueError:
                raise ValueError(f"{quoted(host)} in brackets is not an IPv6 address") from None
        else:
            host = host.lower()
            problem = host_problem(host)
            if problem:
                raise ValueError(problem)
            host = ascii_host(host)
        return cls(host, port)


def parse_port(text: str) -> int:
    """A port number from text; raises ValueError unless it is 1-65535."""
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"port {quoted(text)} is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} out of range 1-65535")
    return port


def ascii_host(host: str) -> str:
    """A hostname as every stage sends it: lowercase ASCII, IDNA 2008 A-labels for Unicode.

    One spelling for the DNS query (dnspython encodes with IDNA 2008), the SNI and the Host
    header (``ssl`` would encode a Unicode name with IDNA 2003, which maps "ß" to "ss": another
    name). UTS 46 without transitional mapping, as httpx and today's browsers do. An ASCII
    name is only lowercased: IDNA's rules would refuse the underscores real DNS names carry.
    Raises ValueError for a name IDNA refuses.
    """
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"host {quoted(host)} is not a valid hostname: {exc}") from None


def host_problem(host: str) -> str | None:
    """Why a host (hostname or IPv4 literal, lowercase) is unusable, or None."""
    if not host:
        return "empty host"
    if ":" not in host and is_ip(host) and parse_address(host) is None:
        return (
            f"host {quoted(host)} is ambiguous: a leading 0 makes a part octal to some programs "
            "and decimal to others; write the address without leading zeros"
        )
    literal = parse_address(host)
    if isinstance(literal, ipaddress.IPv4Address):
        if str(literal) == host:
            return None
        # Connectors read "0x7f.1" or "2130706433" as an address; a list says which one plainly.
        return (
            f"host {quoted(host)} is the IPv4 address {literal} in a legacy spelling: "
            f"write {literal}"
        )
    try:
        name = ascii_host(host).removesuffix(".")
    except ValueError:
        return f"host {quoted(host)} is not a valid hostname"
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return f"host {quoted(host)} is not a valid hostname"
    # A single label is resolved through the volunteer's search domains, i.e. their LAN.
    if len(labels) < 2:
        return f"host {quoted(host)} is not a fully qualified name"
    # An all-digit last label is a mistyped IPv4 address ("10.0.0.256"), not a name.
    if labels[-1].isdigit():
        return f"host {quoted(host)} is not a valid IPv4 address or hostname"
    return None


def url_problem(url: str) -> str | None:
    """Why a URL cannot be measured (scheme, host, userinfo, port, spaces), or None."""
    if not url:
        return "empty URL"
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return f"URL {quoted(url)} contains whitespace or control characters"
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" in the netloc
        return f"URL {quoted(url)} is malformed: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"URL {quoted(url)} must start with http:// or https://"
    if not parts.netloc:
        return f"URL {quoted(url)} has no host"
    if "@" in parts.netloc:
        # Userinfo would leak credentials into every export, and "a.com@b.com" misleads readers.
        return f"URL {quoted(url)} must not contain userinfo (user@)"
    host = parts.hostname or ""
    if parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"URL {quoted(url)}: {quoted(host)} in brackets is not an IPv6 address"
    else:
        problem = host_problem(host)
        if problem:
            return f"URL {quoted(url)}: {problem}"
    _, sep, port_text = parts.netloc.rpartition("]")[2].rpartition(":")
    if sep:
        try:
            parse_port(port_text)
        except ValueError as exc:
            return f"URL {quoted(url)}: {exc}"
    return _client_problem(url)


def _client_problem(url: str) -> str | None:
    """What the measuring client (httpx) refuses in a URL: one rule for check and run."""
    # httpx applies IDNA 2008 (UTS 46) to the host and caps the length; a URL it refuses
    # here would only fail later, inside a sweep. Its message names no more than the rule.
    # Imported here: the settings (and so `probe --version`) use this module, not httpx.
    import httpx

    try:
        parsed = httpx.URL(url)
        parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError) as exc:
        return f"URL {quoted(url)} cannot be requested: {str(exc)[:120]}"
    return None


def name_problem(name: str) -> str | None:
    """Why a service name is not allowed, or None."""
    if _NAME.match(name):
        return None
    return (
        f"{quoted(name)} must be lowercase letters, digits and '-' (at most 64, no '-' at the ends)"
    )


@dataclass(frozen=True, slots=True)
class UrlTarget:
    """A URL input parsed once: scheme, host, port and the path with its query."""

    url: str  # as written
    scheme: str  # "http" or "https"
    host: str  # lowercase ASCII (ascii_host); an IPv6 literal without brackets
    port: int  # the explicit port, else the scheme's
    explicit_port: int | None
    path: str  # path and query, "/" when empty (the fragment is never sent)

    @classmethod
    def parse(cls, url: str) -> UrlTarget:
        """Split a URL into its parts; raises ValueError when it has none to measure.

        Only the structure is read here: whether the URL may be measured is ``url_problem``'s
        rule, which the loader applies to every URL before it becomes an input.
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _PORTS or not parts.hostname:
            raise ValueError(f"URL {quoted(url)} has no http(s) scheme and host")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        port = parts.port
        host = parts.hostname or ""
        if not parts.netloc.startswith("["):
            host = ascii_host(host)  # ValueError names it; the loader checked it before
        return cls(url, scheme, host, port or _PORTS[scheme], port, path)

    def with_host(self, host: str) -> str:
        """This URL with another host (same scheme, port, path and query; no fragment)."""
        netloc = host + (f":{self.explicit_port}" if self.explicit_port else "")
        return f"{self.scheme}://{netloc}{self.path}"


_PORTS = {"http": 80, "https": 443}


def parse_input(kind: InputKind, text: str) -> UrlTarget | Endpoint:
    """An input's parsed form: the one parser of URLs and endpoints every stage shares."""
    return Endpoint.parse(text) if kind == "endpoint" else UrlTarget.parse(text)


@dataclass(frozen=True, slots=True)
class Input:
    """One thing to measure: a URL or an endpoint of a service (one scheduler job each)."""

    service: str
    category: str
    kind: InputKind
    value: str  # the URL as written, or str(Endpoint)
    # Parsed once, when the input is made; every later stage reads this, not ``value``.
    target: UrlTarget | Endpoint = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", parse_input(self.kind, self.value))

    @property
    def host(self) -> str:
        """The host it talks to: a name or an IP literal (the per-host concurrency key)."""
        return self.target.host

    @property
    def endpoint(self) -> Endpoint | None:
        """The parsed endpoint for kind "endpoint", else None."""
        return self.target if isinstance(self.target, Endpoint) else None

    @property
    def url(self) -> UrlTarget | None:
        """The parsed URL for kind "url", else None."""
        return self.target if isinstance(self.target, UrlTarget) else None


@dataclass(frozen=True, slots=True)
class Service:
    """A service (Telegram, WhatsApp...) and everything tested for it."""

    name: str
    category: str
    urls: tuple[str, ...]
    endpoints: tuple[Endpoint, ...]
    throughput_url: str | None = None

    def inputs(self) -> tuple[Input, ...]:
        """Every input of this service: URLs, endpoints, then the throughput URL if not a URL."""
        urls = [Input(self.name, self.category, "url", url) for url in self.urls]
        eps = [Input(self.name, self.category, "endpoint", str(ep)) for ep in self.endpoints]
        if self.throughput_url is not None and self.throughput_url not in self.urls:
            # Measured like any URL (its own row) before it is timed.
            eps.append(Input(self.name, self.category, "url", self.throughput_url))
        return tuple(urls + eps)


@dataclass(frozen=True, slots=True)
class TargetList:
    """Services to test and the neutral reference URLs for the vantage check."""

    services: tuple[Service, ...]
    references: tuple[str, ...]
    source: str  # the file (or files, comma-separated) it came from

    def inputs(self) -> tuple[Input, ...]:
        """Every input of every service, in list order."""
        return tuple(inp for service in self.services for inp in service.inputs())

    def service(self, name: str) -> Service:
        """The service with this name; raises KeyError."""
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def names(self) -> tuple[str, ...]:
        """Service names in list order."""
        return tuple(service.name for service in self.services)


def _cut(text: str, limit: int = QUOTE_LIMIT) -> str:
    """Text from the input, unquoted, cut to ``limit`` characters ending in "..."."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TargetError(ValueError):
    """One problem in a target file, located by file, line and field."""

    def __init__(
        self,
        file: str,
        line: int | None,
        message: str,
        *,
        field: str | None = None,
        service: str | None = None,
        index: int | None = None,
        column: int | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.message = message
        self.field = field
        self.service = service  # the service's name, when it has a usable one
        self.index = index  # 1-based ordinal of the [[service]] table, when the name is unusable
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [where]
        if self.service is not None:
            parts.append(f'service "{_cut(self.service)}"')
        elif self.index is not None:
            parts.append(f"service #{self.index}")
        if self.field:
            parts.append(_cut(self.field))  # an unknown key is named as the file wrote it
        parts.append(self.message)
        return ": ".join(parts)


class TargetErrors(ValueError):
    """Every problem found in one load, so a file can be fixed in one pass."""

    def __init__(self, errors: Iterable[TargetError]) -> None:
        self.errors: tuple[TargetError, ...] = tuple(errors)
        super().__init__("\n".join(str(error) for error in self.errors))

    def __iter__(self) -> Iterator[TargetError]:
        return iter(self.errors)

    def __len__(self) -> int:
        return len(self.errors)


def read_text(path: Path) -> str:
    """A target file's text; unreadable or non-UTF-8 files become TargetErrors."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TargetErrors([TargetError(str(path), None, f"cannot read: {exc.strerror}")]) from exc
    try:
        return raw.decode("utf-8-sig")  # tolerate the BOM some Windows editors add
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TargetErrors([TargetError(str(path), line, "not UTF-8 text")]) from exc
