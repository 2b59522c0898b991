"""Small MaxMind-format (.mmdb) files of the tests' own, in the free databases' shapes.

Written with ``mmdb-writer`` (the test extra); read back by the probe with ``maxminddb``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet

LOOPBACK_ASN = 64500
LOOPBACK_NAME = "Loopback Test Net"
LOOPBACK_COUNTRY = "KZ"


def write_mmdb(path: Path, kind: str, networks: dict[str, dict[str, Any]]) -> Path:
    """A database of type ``kind`` holding each CIDR's record."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=kind, int_type="u32")
    for cidr, record in networks.items():
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return path


def asn_db(path: Path, asn: int = LOOPBACK_ASN, name: str = LOOPBACK_NAME) -> Path:
    """GeoLite2-ASN's shape: 127.0.0.0/8 in AS ``asn``."""
    record = {"autonomous_system_number": asn, "autonomous_system_organization": name}
    return write_mmdb(path, "GeoLite2-ASN", {"127.0.0.0/8": record})


def country_db(path: Path, country: str = LOOPBACK_COUNTRY) -> Path:
    """GeoLite2-Country's shape: 127.0.0.0/8 in ``country``."""
    record = {"country": {"iso_code": country, "names": {"en": "Test"}}}
    return write_mmdb(path, "GeoLite2-Country", {"127.0.0.0/8": record})
