"""measurements.geoip: the database shapes read alike, two files as one, bad files named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from measurements.geoip import GeoIPError, Place, open_geoip, place_of, source_address
from tests.geoip_files import asn_db, country_db, write_mmdb

SHAPES: list[tuple[str, dict[str, Any], Place]] = [
    # (the database's shape, its record, what is read of it)
    (
        "GeoLite2-ASN",
        {"autonomous_system_number": 9198, "autonomous_system_organization": "JSC Kazakhtelecom"},
        Place(9198, "JSC Kazakhtelecom", None),
    ),
    (
        "GeoLite2-Country",
        {"country": {"iso_code": "KZ"}, "registered_country": {"iso_code": "RU"}},
        Place(None, None, "KZ"),
    ),
    (
        "GeoLite2-City",
        {"city": {"names": {"en": "Almaty"}}, "registered_country": {"iso_code": "KZ"}},
        Place(None, None, "KZ"),
    ),
    (
        "DBIP-ASN-Lite",
        {"autonomous_system_number": 9198, "autonomous_system_organization": "Kazakhtelecom"},
        Place(9198, "Kazakhtelecom", None),
    ),
    (
        "ipinfo country_asn",
        {"asn": "AS9198", "as_name": "Kazakhtelecom", "country": "kz"},
        Place(9198, "Kazakhtelecom", "KZ"),
    ),
    (
        "garbage",
        {"asn": "ASX", "country": "Kazakhstan", "autonomous_system_organization": 5},
        Place(),
    ),
    (
        "no AS number: no name",
        {"as_name": "Orphan", "country": {"iso_code": "KZ"}},
        Place(None, None, "KZ"),
    ),
]


@pytest.mark.parametrize(("kind", "record", "expected"), SHAPES, ids=[s[0] for s in SHAPES])
def test_every_free_database_shape_is_read(
    tmp_path: Path, kind: str, record: dict[str, Any], expected: Place
) -> None:
    path = write_mmdb(tmp_path / "db.mmdb", kind, {"127.0.0.0/8": record})
    geoip = open_geoip([str(path)])
    try:
        assert geoip.lookup("127.0.0.1") == expected
        assert geoip.lookup("::ffff:127.0.0.1") == expected  # a dual-stack socket's spelling
        assert geoip.lookup("192.0.2.1").empty and geoip.lookup("not an address").empty
    finally:
        geoip.close()


def test_an_asn_file_and_a_country_file_are_looked_up_as_one(tmp_path: Path) -> None:
    files = [str(asn_db(tmp_path / "asn.mmdb")), str(country_db(tmp_path / "country.mmdb"))]
    geoip = open_geoip(files)
    try:
        assert geoip.files == tuple(files)
        assert geoip.lookup("127.0.0.1") == Place(64500, "Loopback Test Net", "KZ")
    finally:
        geoip.close()


def test_each_field_comes_from_the_first_record_that_has_it() -> None:
    first = {"autonomous_system_number": 1, "autonomous_system_organization": "One"}
    second = {"asn": 2, "as_name": "Two", "country": "KZ"}
    assert place_of([None, first, second]) == Place(1, "One", "KZ")
    assert place_of([{"as_name": "Nameless"}, second]) == Place(2, "Two", "KZ")


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent.mmdb"
    with pytest.raises(GeoIPError, match=rf"^{missing}: cannot read the database"):
        open_geoip([str(missing)])
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a database at all" * 100)
    good = asn_db(tmp_path / "asn.mmdb")
    with pytest.raises(GeoIPError, match=rf"^{broken}: not a MaxMind DB \(\.mmdb\) file$"):
        open_geoip([str(good), str(broken)])


async def test_the_source_address_towards_a_host_sends_nothing() -> None:
    assert await source_address("127.0.0.1") == "127.0.0.1"
    assert await source_address("127.0.0.2", 9) == "127.0.0.1"  # the kernel's choice
