"""The one address rule: every spelling and every embedding of IPv4 in IPv6 (pure, no sockets)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from measurements.addresses import (
    address_problem,
    canonical_address,
    is_bogon,
    is_ip,
    parse_networks,
    split_host_port,
)

LAB = parse_networks(["198.18.0.0/15", "127.0.0.0/8"])

# (text as it came from DNS, a URL host or a helper request, the expected problem or None)
CASES: list[tuple[str, str | None]] = [
    # loopback in every spelling a connector accepts
    ("127.0.0.1", "loopback"),
    ("2130706433", "loopback"),
    ("0x7f.0.0.1", "loopback"),
    ("0x7f000001", "loopback"),
    ("0X7F000001", "loopback"),
    ("0177.0.0.1", "loopback (read as octal)"),  # 177.0.0.1 to a decimal reader
    ("017700000001", "loopback"),
    ("127.1", "loopback"),
    ("127.0.1", "loopback"),
    ("0x7f.1", "loopback"),
    ("127.0.0.1.", "loopback"),
    ("127.000.000.001", "loopback"),
    ("::1", "loopback"),
    ("[::1]", "loopback"),
    ("0:0:0:0:0:0:0:1", "loopback"),
    # the cloud metadata address, spelled four ways
    ("169.254.169.254", "link-local"),
    ("0xa9.0xfe.0xa9.0xfe", "link-local"),
    ("0xA9FEA9FE", "link-local"),
    ("2852039166", "link-local"),
    # IPv4 ranges
    ("10.1.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.0.1", "private"),
    ("0.0.0.0", "unspecified"),
    ("0x", "unspecified"),  # glibc and WHATWG read a bare "0x" as 0
    ("0.1.2.3", "this-network"),
    ("100.64.0.1", "shared (carrier-grade NAT)"),
    ("100.127.255.255", "shared (carrier-grade NAT)"),
    ("192.0.0.1", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.255", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.254", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("4294967295", "broadcast"),
    ("192.88.99.1", "reserved"),
    # IPv6 ranges
    ("::", "unspecified"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fec0::1", "site-local"),
    ("fe80::1", "link-local"),
    ("FE80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("[fe80::1%25eth0]", "link-local"),
    ("ff02::1", "multicast"),
    ("100::1", "reserved"),
    ("4000::1", "reserved"),
    # IPv4-mapped and IPv4-translated (SIIT): the embedded IPv4 decides
    ("::ffff:127.0.0.1", "loopback (inside IPv4-mapped)"),
    ("::FFFF:7F00:1", "loopback (inside IPv4-mapped)"),
    ("[::ffff:169.254.169.254]", "link-local (inside IPv4-mapped)"),
    ("::ffff:0:10.0.0.1", "private (inside IPv4-translated)"),
    # IPv4-compatible, 6to4, Teredo: tunnels, refused even around a public IPv4
    ("::127.0.0.1", "loopback (inside IPv4-compatible)"),
    ("::10.0.0.1", "private (inside IPv4-compatible)"),
    ("::93.184.215.14", "tunnel (IPv4-compatible)"),
    ("2002:a9fe:a9fe::", "link-local (inside 6to4)"),
    ("2002:a00:1::1", "private (inside 6to4)"),
    ("2002:7f00:1::", "loopback (inside 6to4)"),
    ("2002:5db8:d70e::1", "tunnel (6to4)"),
    ("2001:0:a00:1::5db8:d70e", "private (inside Teredo server)"),
    ("2001:0:5db8:d70e::f5ff:fffe", "private (inside Teredo client)"),  # 10.0.0.1 ^ ~0
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "documentation (inside Teredo client)"),  # RFC 4380
    ("2001:0:5db8:d70e::fefe:fefe", "tunnel (Teredo)"),
    # NAT64: well-known prefix (/96), and local-use (every RFC 6052 reading must be public)
    ("64:ff9b::10.0.0.1", "private (inside NAT64)"),
    ("64:ff9b::a9fe:a9fe", "link-local (inside NAT64)"),
    ("64:ff9b::127.0.0.1", "loopback (inside NAT64)"),
    ("64:ff9b:1:a00:0:100::", "private (inside NAT64 local-use)"),  # /48 layout of 10.0.0.1
    ("64:ff9b:1:5d5d:5dc0:a801:15d:5d5d", "private (inside NAT64 local-use)"),  # /64 layout
    ("64:ff9b:1::93.184.215.14", "unspecified (inside NAT64 local-use)"),  # /48 reads 0.0.0.0
    # public addresses stay allowed, in any spelling
    ("93.184.215.14", None),
    ("0x5db8d70e", None),
    ("1.1.1.1", None),
    ("0x01.0x01.0x01.0x01", None),
    ("1.0x1.01.1", None),
    # a leading 0: octal to glibc and browsers, decimal to Go < 1.17 and Python < 3.9.5
    ("0127.0.0.1", "loopback (read as decimal)"),  # 87.0.0.1 to glibc
    ("010.0.0.1", "private (read as decimal)"),  # 8.0.0.1 to glibc
    ("010.1", "private (read as decimal)"),
    ("00000127.0.0.1", "loopback (read as decimal)"),
    ("011.1.1.1", "ambiguous (octal or decimal)"),  # 9.1.1.1 or 11.1.1.1: both public
    ("08.0.0.1", "ambiguous (a name to glibc, a decimal address to others)"),
    ("010.0.0.9", "private (read as decimal)"),
    ("100.128.0.1", None),
    ("172.32.0.1", None),
    ("198.20.0.1", None),
    ("2606:4700::1111", None),
    ("[2606:4700::1111]", None),
    ("2606:4700::1111%eth0", None),
    ("2001:4860:4860::8888", None),
    ("::ffff:1.1.1.1", None),
    ("::ffff:0:93.184.215.14", None),
    ("64:ff9b::93.184.215.14", None),
    ("64:ff9b::5db8:d70e", None),
    ("64:ff9b:1:5d5d:5d5d:5d5d:5d5d:5d5d", None),  # 93.93.93.93 at every position
    # not addresses: refused, whatever a lenient C library might make of them
    ("", "not an address"),
    ("example.com", "not an address"),
    ("127.0.0.1 x", "not an address"),  # glibc's inet_aton stops at the space
    (" 1.1.1.1", "not an address"),
    ("256.0.0.1", "not an address"),
    ("1.2.3.256", "not an address"),
    ("1.2.65536", "not an address"),
    ("4294967296", "not an address"),
    ("0x100000000", "not an address"),
    ("1.2.3.4.5", "not an address"),
    ("1..1", "not an address"),
    ("0xg", "not an address"),
    ("0x8.09", "not an address"),  # hex and a bad octal: no reading at all
    ("-1", "not an address"),
    ("+1.2.3.4", "not an address"),
    ("1_0.0.0.1", "not an address"),
    ("1.2.3.4/24", "not an address"),
    ("[127.0.0.1]", "not an address"),
    ("::ffff:0177.0.0.1", "not an address"),
    ("\u0663.1.1.1", "not an address"),  # an Arabic-Indic digit: int() would take it
    ("9" * 5000, "not an address"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_address_problem(text: str, expected: str | None) -> None:
    assert address_problem(text) == expected
    assert is_bogon(text) is (expected is not None)


def test_the_table_is_large_and_has_no_duplicates() -> None:
    texts = [text for text, _ in CASES]
    assert len(texts) >= 60 and len(set(texts)) == len(texts)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f.00.0.01", "127.0.0.1"),
        ("0177.0.0.1", None),  # 127.0.0.1 or 177.0.0.1: no single address
        ("127.000.000.001", "127.0.0.1"),  # octal and decimal agree
        ("10.1.1", "10.1.0.1"),
        ("0x01.0x01.0x01.0x01", "1.1.1.1"),
        ("0x1.0x2.0x3.0x4.", "1.2.3.4"),
        ("[::1]", "::1"),
        ("::FFFF:7F00:1", "::ffff:7f00:1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("example.com", None),
        ("127.0.0.1 x", None),
    ],
)
def test_canonical_address(text: str, canonical: str | None) -> None:
    assert canonical_address(text) == canonical
    # A URL host that some connector reads as an address must not be resolved as a name.
    assert is_ip(text) is (canonical is not None or text == "0177.0.0.1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.18.0.1", None),
        ("127.0.0.1", None),
        ("0x7f.1", None),
        ("2130706433", None),
        ("::ffff:198.18.0.1", None),  # routable applies to the embedded IPv4
        ("::ffff:0:127.0.0.1", None),
        ("64:ff9b::198.18.0.1", None),
        ("2002:c612:1::", "tunnel (6to4)"),  # a routable IPv4 does not make a tunnel safe
        ("::1", "loopback"),  # 127.0.0.0/8 is IPv4 only
        ("10.0.0.1", "private"),
        ("::ffff:10.0.0.1", "private (inside IPv4-mapped)"),
    ],
)
def test_routable_ranges_count_as_public(text: str, expected: str | None) -> None:
    assert address_problem(text, LAB) == expected


def test_routable_applies_to_the_address_as_written() -> None:
    assert address_problem("fd00::1", parse_networks(["fd00::/8"])) is None
    assert address_problem("2002:a00:1::", parse_networks(["2002::/16"])) is None
    assert address_problem("fd00::1", parse_networks(["fc00::/8"])) == "unique-local"


# Every way an IPv4 address can be written inside IPv6, and whether it is judged by the
# embedded IPv4 alone (True) or refused as a tunnel whatever it wraps (False).
def _mapped(v: int) -> int:
    return 0xFFFF << 32 | v


def _translated(v: int) -> int:
    return 0xFFFF0000 << 32 | v


def _nat64(v: int) -> int:
    return 0x0064FF9B << 96 | v


def _compatible(v: int) -> int:
    return v


def _six_to_four(v: int) -> int:
    return 0x2002 << 112 | v << 80 | 1


def _teredo_server(v: int) -> int:
    return 0x20010000 << 96 | v << 64 | (0x5DB8D70E ^ 0xFFFFFFFF)


def _teredo_client(v: int) -> int:
    return 0x20010000 << 96 | 0x5DB8D70E << 64 | (v ^ 0xFFFFFFFF)


JUDGED = [_mapped, _translated, _nat64]
TUNNELS = [_compatible, _six_to_four, _teredo_server, _teredo_client]
ipv4s = st.integers(min_value=0, max_value=0xFFFFFFFF)


@given(ipv4s, st.sampled_from(JUDGED), st.sampled_from([(), LAB]), st.booleans())
def test_an_embedding_gets_the_decision_of_its_ipv4(
    value: int, embed: object, routable: tuple[ipaddress.IPv4Network, ...], bracket: bool
) -> None:
    assert callable(embed)
    v4 = str(ipaddress.IPv4Address(value))
    v6 = str(ipaddress.IPv6Address(embed(value)))
    alone = address_problem(v4, routable)
    inside = address_problem(f"[{v6}]" if bracket else v6, routable)
    assert (inside is None) is (alone is None)
    if alone is not None:
        assert inside is not None and inside.startswith(f"{alone} (inside ")


@given(ipv4s, st.sampled_from(TUNNELS), st.sampled_from([(), LAB]))
def test_a_tunnel_is_refused_and_says_when_its_ipv4_is_not_public(
    value: int, embed: object, routable: tuple[ipaddress.IPv4Network, ...]
) -> None:
    assert callable(embed)
    v4 = str(ipaddress.IPv4Address(value))
    v6 = str(ipaddress.IPv6Address(embed(value)))
    alone = address_problem(v4, routable)
    inside = address_problem(v6, routable)
    assert inside is not None
    if alone is not None and v6 not in ("::", "::1"):
        assert inside.startswith(f"{alone} (inside ")
    elif alone is None:
        assert inside.startswith("tunnel (")


@given(ipv4s, st.sampled_from([48, 56, 64, 96]))
def test_nat64_local_use_is_refused_when_its_ipv4_is(value: int, layout: int) -> None:
    # RFC 6052: the IPv4 follows the prefix; bits 64-71 (the "u" octet) are skipped.
    if layout == 96:
        embedded = value
    else:
        bits = value << (120 - layout - 32)
        embedded = ((bits >> 56) << 64) | (bits & ((1 << 56) - 1))
    v6 = str(ipaddress.IPv6Address(0x0064FF9B0001 << 80 | embedded))
    alone = address_problem(str(ipaddress.IPv4Address(value)))
    inside = address_problem(v6)
    if alone is not None:
        assert inside is not None
    if inside is None:
        assert alone is None


@given(st.text(max_size=40))
def test_the_rule_is_total_and_agrees_with_parsing(text: str) -> None:
    problem = address_problem(text)
    canonical = canonical_address(text)
    if not is_ip(text):
        assert problem == "not an address" and canonical is None
    elif canonical is not None:
        assert address_problem(canonical) == problem
    else:
        assert problem is not None  # an ambiguous spelling is never contacted


@given(ipv4s, st.sampled_from([(), LAB]))
def test_every_legacy_spelling_reads_back_as_the_same_address(
    value: int, routable: tuple[ipaddress.IPv4Network, ...]
) -> None:
    octets = ipaddress.IPv4Address(value).packed
    expected = str(ipaddress.IPv4Address(value))
    plain = [
        str(value),
        hex(value),
        hex(value).upper().replace("0X", "0x"),
        ".".join(hex(b) for b in octets),
        f"{octets[0]}.{int.from_bytes(octets[1:])}",
        f"{octets[0]}.{octets[1]}.{int.from_bytes(octets[2:])}",
        expected + ".",
    ]
    for spelling in plain:
        assert canonical_address(spelling) == expected, spelling
        assert address_problem(spelling, routable) == address_problem(expected, routable)
    # Octal parts: that address to glibc and browsers, another to a decimal reader; refused
    # whenever the address is, and otherwise either the same address or refused as ambiguous.
    for spelling in (oct(value).replace("0o", "0"), ".".join("0" + oct(b)[2:] for b in octets)):
        assert canonical_address(spelling) in (expected, None), spelling
        if address_problem(expected, routable) is not None:
            assert address_problem(spelling, routable) is not None, spelling


@pytest.mark.parametrize(
    ("text", "default", "expect"),
    [
        ("198.18.0.1:53", None, ("198.18.0.1", 53)),
        ("[2001:db8::1]:443", None, ("2001:db8::1", 443)),
        ("2001:db8::1", 53, ("2001:db8::1", 53)),
        ("[2001:db8::1]", 53, ("2001:db8::1", 53)),
        ("name.test", 80, ("name.test", 80)),
        ("name.test", None, "has no port"),
        ("name.test:0", None, "out of range"),
        ("name.test:http", None, "is not a number"),
        ("[2001:db8::1", None, "no closing"),
        ("[2001:db8::1]x", None, "expected \\[address\\]:port"),
        ("2001:db8::1", None, "in brackets"),
        ("a:b:c", 53, "in brackets"),
    ],
)
def test_the_one_host_port_parser(
    text: str, default: int | None, expect: tuple[str, int] | str
) -> None:
    if isinstance(expect, tuple):
        assert split_host_port(text, default) == expect
    else:
        with pytest.raises(ValueError, match=expect):
            split_host_port(text, default)
