"""Where an address is: its AS number, the AS's organisation and its country, from a local file.

The files are MaxMind DB files (``.mmdb``), read with ``maxminddb``; one or two of them, in
any of the shapes the free databases come in:

    GeoLite2-ASN, DB-IP ASN      autonomous_system_number, autonomous_system_organization
    GeoLite2-Country/City,       country.iso_code (else registered_country.iso_code)
    DB-IP Country/City
    IPinfo country_asn           asn ("AS64500"), as_name, country ("KZ")

Each field comes from the first file that has it, so an ASN file and a country file, or one
combined file, serve alike. Files are opened once, before the event loop runs (``open_geoip``
reads the header and fails naming the file); a lookup reads the memory-mapped file and makes
no system call, so it may run in the loop. Nothing here keeps or returns the address looked
up: a ``Place`` holds only what the database says about it.

``source_address`` is the one network step: the address the kernel would send from towards
a host (a UDP socket connected there; connecting a UDP socket sends no packet).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# maxminddb (and the multiprocessing it imports, about 4 MB) is read only when a file is
# opened: most sweeps and the daemon have no vantage.geoip_db.
if TYPE_CHECKING:
    from maxminddb.reader import Reader

_ASN_TEXT = re.compile(r"^(?:AS)?(\d{1,10})$", re.IGNORECASE)


class GeoIPError(ValueError):
    """A database file that cannot be used; the text names the file."""


@dataclass(frozen=True, slots=True)
class Place:
    """What a database says about an address (never the address itself)."""

    asn: int | None = None
    network_name: str | None = None  # the AS's organisation
    country: str | None = None  # ISO 3166 alpha-2, upper case

    @property
    def empty(self) -> bool:
        """True when the databases know nothing of the address."""
        return self.asn is None and self.country is None and self.network_name is None


def _asn(record: Mapping[str, Any]) -> int | None:
    value = record.get("autonomous_system_number", record.get("asn"))
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 32:
        return value
    m = _ASN_TEXT.match(value) if isinstance(value, str) else None
    return int(m.group(1)) if m and 0 < int(m.group(1)) < 1 << 32 else None


def _name(record: Mapping[str, Any]) -> str | None:
    value = record.get("autonomous_system_organization", record.get("as_name"))
    if not isinstance(value, str):
        return None
    return value.strip()[:256] or None


def _country(record: Mapping[str, Any]) -> str | None:
    for key in ("country", "registered_country"):
        value = record.get(key)
        code = value.get("iso_code") if isinstance(value, Mapping) else value
        if isinstance(code, str) and re.fullmatch(r"[A-Za-z]{2}", code):
            return code.upper()
    return None


def place_of(records: Iterable[Mapping[str, Any] | None]) -> Place:
    """Each field from the first record that has it (one record per database file)."""
    asn = name = country = None
    for record in records:
        if not isinstance(record, Mapping):
            continue
        if asn is None and (found := _asn(record)) is not None:
            asn, name = found, _name(record)  # the name belongs to this record's AS
        country = country or _country(record)
    return Place(asn, name if asn is not None else None, country)


class GeoIP:
    """One or two open database files, looked up as one."""

    def __init__(self, readers: tuple[tuple[str, Reader], ...]) -> None:
        self._readers = readers

    @property
    def files(self) -> tuple[str, ...]:
        """The files, as given."""
        return tuple(path for path, _ in self._readers)

    def lookup(self, ip: str) -> Place:
        """What the files say about ``ip``; an empty Place when none knows it."""
        try:
            parsed = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return Place()
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            parsed = parsed.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
        records = []
        for _, reader in self._readers:
            try:
                found = reader.get(parsed)
            except ValueError:  # IPv6 in an IPv4-only file
                found = None
            records.append(found if isinstance(found, Mapping) else None)
        return place_of(records)

    def close(self) -> None:
        """Close every file."""
        for _, reader in self._readers:
            reader.close()


def open_geoip(paths: Iterable[str]) -> GeoIP:
    """The files opened and checked (blocking: call it before the event loop)."""
    import maxminddb

    readers: list[tuple[str, Reader]] = []
    try:
        for path in paths:
            try:
                reader = maxminddb.open_database(path, maxminddb.MODE_AUTO)
            except OSError as exc:
                raise GeoIPError(f"{path}: cannot read the database: {exc.strerror}") from None
            except (maxminddb.InvalidDatabaseError, ValueError):
                raise GeoIPError(f"{path}: not a MaxMind DB (.mmdb) file") from None
            readers.append((path, reader))
    except GeoIPError:
        for _, reader in readers:
            reader.close()
        raise
    return GeoIP(tuple(readers))


async def source_address(host_ip: str, port: int = 443) -> str | None:
    """The local address the kernel picks towards ``host_ip``; None when there is no route.

    A connected UDP socket has its source chosen by the routing table; no packet is sent.
    """
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    loop = asyncio.get_running_loop()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (host_ip, port))
        except OSError:  # no route, network unreachable
            return None
        return str(sock.getsockname()[0]).split("%", 1)[0]
