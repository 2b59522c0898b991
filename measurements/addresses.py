"""Which addresses may be measured: the one rule for the probe, the helper and the redirect check.

An address arrives as text (a DNS answer, a URL host, a helper request) and is judged in two
steps, both pure (no sockets, no resolver):

1. ``parse_address`` reads every spelling a connector would accept: dotted decimal, the legacy
   ``inet_aton`` forms that getaddrinfo, curl and browsers (the WHATWG URL parser) also accept
   (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``, a trailing dot), IPv6 in any case,
   in brackets, with a zone id. The legacy parser is our own small exact function rather than
   ``socket.inet_aton``, because the C library's version differs between platforms (glibc's
   accepts "127.0.0.1 anything", stopping at the space). Anything else is "not an address",
   which ``address_problem`` refuses: refusing is the safe side. A part with a leading zero
   is octal to glibc and browsers but decimal to some libraries ("010" is 8 or 10): such a
   spelling has no single address, and is refused unless both readings are the same.
2. ``address_problem`` unwraps every embedding of IPv4 in IPv6 and judges both layers:

   ===================  =================  =====================================================
   embedding            range              rule
   ===================  =================  =====================================================
   IPv4-mapped          ::ffff:0:0/96      the embedded IPv4 is judged (the kernel sends IPv4)
   IPv4-translated      ::ffff:0:0:0/96    the embedded IPv4 is judged (SIIT, RFC 7915)
   NAT64 well-known     64:ff9b::/96       the embedded IPv4 is judged (RFC 6052 forbids
                                           non-global ones; a translator would forward them)
   NAT64 local-use      64:ff9b:1::/48     every RFC 6052 position (prefix /48, /56, /64, /96)
                                           is judged: which one the local translator uses is not
                                           known, so all must be public
   IPv4-compatible      ::/96              refused: deprecated, delivered by an automatic tunnel
   6to4                 2002::/16          refused: a tunnel through a relay nobody vetted
   Teredo               2001::/32          refused: a tunnel (server and client IPv4 judged)
   ===================  =================  =====================================================

   A refused embedded IPv4 names the embedding ("private (inside 6to4)"); a tunnel wrapping a
   public IPv4 is refused as "tunnel (6to4)". Ranges in ``routable`` count as public, both for
   the address as written and for an embedded IPv4 (labs use 198.18.0.0/15 and 127.0.0.0/8).

Network-specific NAT64 prefixes (chosen by an operator anywhere in the address space) cannot be
recognised from the address alone; they are judged as the IPv6 addresses they are.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TypeAlias

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# First match wins, so narrower ranges come before the ranges that hold them.
_IPV4_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("0.0.0.0/32"), "unspecified"),
    (_V4("0.0.0.0/8"), "this-network"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("100.64.0.0/10"), "shared (carrier-grade NAT)"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("192.0.0.0/24"), "reserved"),  # IETF protocol assignments
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "reserved"),  # the deprecated 6to4 relay anycast (RFC 7526)
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),
)

_IPV6_RANGES: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),  # RFC 9637
    (_V6("2001:2::/48"), "benchmarking"),
    (_V6("fc00::/7"), "unique-local"),
    (_V6("fec0::/10"), "site-local"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("ff00::/8"), "multicast"),
)

# Only 2000::/3 is allocated as global unicast; every other range is special or unassigned.
_GLOBAL_UNICAST = _V6("2000::/3")

_MAPPED = _V6("::ffff:0:0/96")
_TRANSLATED = _V6("::ffff:0:0:0/96")
_COMPATIBLE = _V6("::/96")
_NAT64 = _V6("64:ff9b::/96")
_NAT64_LOCAL = _V6("64:ff9b:1::/48")
_SIX_TO_FOUR = _V6("2002::/16")
_TEREDO = _V6("2001::/32")

_HEX = frozenset("0123456789abcdefABCDEF")
_OCTAL = frozenset("01234567")
_DECIMAL = frozenset("0123456789")
_LOW32 = 0xFFFFFFFF


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Networks from CIDR strings; raises ValueError naming the bad one."""
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise ValueError(f"not a network: {cidr!r}") from exc
    return tuple(out)


def _number(part: str, octal: bool) -> int | None:
    """One part of a legacy IPv4 spelling: 0x hex, 0-led octal, or decimal; None if invalid."""
    if part[:2] in ("0x", "0X"):
        digits, base, allowed = part[2:], 16, _HEX  # a bare "0x" is 0 for glibc and WHATWG
    elif octal and len(part) > 1 and part[0] == "0":
        digits, base, allowed = part[1:], 8, _OCTAL
    else:
        digits, base, allowed = part, 10, _DECIMAL
    if not part or not set(digits) <= allowed:
        return None  # int() alone would accept "+1", " 1", "1_0" and non-ASCII digits
    # Leading zeros are allowed in any number; what is left must fit 32 bits (at most 11
    # octal digits), which also keeps int() away from very long strings.
    digits = digits.lstrip("0") or "0"
    if len(digits) > 11:
        return None
    return int(digits, base)


def _legacy_ipv4(parts: list[str], octal: bool) -> ipaddress.IPv4Address | None:
    """An IPv4 address from the dot-separated parts of an inet_aton/WHATWG spelling, or None."""
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_number(part, octal) for part in parts]
    if any(n is None for n in numbers):
        return None
    *head, last = [n for n in numbers if n is not None]
    # The last part fills the bytes the others left: "127.1" is 127.0.0.1.
    if any(n > 255 for n in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    value = last
    for i, n in enumerate(head):
        value |= n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


# Every step of every input asks what its address is (is_ip, address_problem, canonical
# forms): the same few texts, thousands of times a sweep. The readings are immutable.
@lru_cache(maxsize=4096)
def _readings(text: str) -> tuple[Address | None, ...]:
    """What connectors read ``text`` as: (), (address,), or (octal, decimal) readings.

    An octal reading of None is a spelling glibc and browsers take for a name ("08.0.0.1").
    """
    if not text.isascii():
        return ()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        if ":" not in inner:
            return ()  # brackets hold IPv6 only
        text = inner
    if ":" in text:
        try:
            return (ipaddress.IPv6Address(text),)  # zone ids ("%eth0") are accepted and kept
        except ValueError:
            return ()
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # "127.0.0.1." is accepted by browsers and curl
    octal = _legacy_ipv4(parts, octal=True)
    # glibc and browsers read "010" as octal 8; Go before 1.17 and Python before 3.9.5 read it
    # as decimal 10 (CVE-2021-29923, CVE-2021-29921). Both readings are judged.
    decimal = _legacy_ipv4(parts, octal=False) if all(p.isdigit() for p in parts) else None
    if decimal is None or decimal == octal:
        return () if octal is None else (octal,)
    return (octal, decimal)


def parse_address(text: str) -> Address | None:
    """The address an IP literal in any spelling denotes, or None (not one, or ambiguous)."""
    readings = _readings(text)
    return readings[0] if len(readings) == 1 else None  # one reading is never None


def canonical_address(text: str) -> str | None:
    """The standard spelling of an IP literal ("0x7f.1" -> "127.0.0.1"), or None."""
    addr = parse_address(text)
    return None if addr is None else str(addr)


def split_host_port(
    text: str, default_port: int | None = None, show: Callable[[str], str] = repr
) -> tuple[str, int]:
    """(host, port) from "host:port", "[v6]:port", or, with a default port, "host", "[v6]" or
    a bare IPv6 address: the one host:port parser. Raises ValueError saying what is wrong.

    Only the syntax is checked here; whether the host is a usable name or address is the
    caller's rule (a target, a resolver, a listening address each have their own). ``show``
    quotes the text in a message (a target list's quoting cuts a long one short).
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"{show(text)} has no closing ']'")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{show(text)}: expected [address]:port")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif text.count(":") > 1 and default_port is not None and is_ip(text):
        host, port_text = text, None  # a bare IPv6 address
    elif text.count(":") > 1:
        raise ValueError(f"{show(text)}: write an IPv6 address in brackets, [address]:port")
    else:
        host, port_text = text, None
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{show(text)} has no port (expected host:port)")
        return host, default_port
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"port {show(port_text)} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} out of range 1-65535")
    return host, port


def is_ip(text: str) -> bool:
    """True for an IP literal in any spelling a connector accepts (so never resolved as a name).

    An ambiguous one ("010.0.0.1": 8.0.0.1 or 10.0.0.1) is a literal too, with no
    ``canonical_address``; ``address_problem`` refuses it.
    """
    return bool(_readings(text))


def _ipv4_problem(addr: ipaddress.IPv4Address, routable: tuple[Network, ...]) -> str | None:
    if any(addr in net for net in routable):
        return None
    for net, problem in _IPV4_RANGES:
        if addr in net:
            return problem
    if not addr.is_global:
        return "reserved"  # whatever the ranges above missed and the IANA registry lists
    return None


def _rfc6052(value: int, prefix_length: int) -> ipaddress.IPv4Address:
    """The IPv4 address embedded after an RFC 6052 prefix of this length (32 to 96)."""
    if prefix_length == 96:
        return ipaddress.IPv4Address(value & _LOW32)
    # Bits 64-71 (the "u" octet) never carry address bits: drop them, then read 32 bits.
    without_u = ((value >> 64) << 56) | (value & ((1 << 56) - 1))
    return ipaddress.IPv4Address((without_u >> (120 - prefix_length - 32)) & _LOW32)


def _embedded(addr: ipaddress.IPv6Address) -> tuple[str, list[tuple[str, ipaddress.IPv4Address]]]:
    """(embedding, [(role, IPv4)...]) for an IPv6 address that carries IPv4, or ("", [])."""
    value = int(addr)
    if addr in _MAPPED:
        return "IPv4-mapped", [("", ipaddress.IPv4Address(value & _LOW32))]
    if addr in _TRANSLATED:
        return "IPv4-translated", [("", ipaddress.IPv4Address(value & _LOW32))]
    if addr in _COMPATIBLE:
        return "IPv4-compatible", [("", ipaddress.IPv4Address(value & _LOW32))]
    if addr in _NAT64:
        return "NAT64", [("", ipaddress.IPv4Address(value & _LOW32))]
    if addr in _NAT64_LOCAL:
        return "NAT64 local-use", [("", _rfc6052(value, n)) for n in (48, 56, 64, 96)]
    if addr in _SIX_TO_FOUR:
        return "6to4", [("", ipaddress.IPv4Address((value >> 80) & _LOW32))]
    if addr in _TEREDO:
        server = ipaddress.IPv4Address((value >> 64) & _LOW32)
        client = ipaddress.IPv4Address((value & _LOW32) ^ _LOW32)  # RFC 4380 obfuscates it
        return "Teredo", [(" server", server), (" client", client)]
    return "", []


# Embeddings that reach the IPv4 through a tunnel or relay: refused even when it is public.
_TUNNELS = frozenset({"IPv4-compatible", "6to4", "Teredo"})


def _ipv6_problem(addr: ipaddress.IPv6Address, routable: tuple[Network, ...]) -> str | None:
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    kind, inner = _embedded(addr)
    if kind:
        for role, ipv4 in inner:
            problem = _ipv4_problem(ipv4, routable)
            if problem is not None:
                return f"{problem} (inside {kind}{role})"
        return f"tunnel ({kind})" if kind in _TUNNELS else None
    for net, problem in _IPV6_RANGES:
        if addr in net:
            return problem
    if addr not in _GLOBAL_UNICAST or not addr.is_global:
        return "reserved"
    return None


def address_problem(ip: str, routable: Iterable[Network] = ()) -> str | None:
    """Why an address must not be contacted ("private", "tunnel (6to4)", ...), or None if it may.

    ``ip`` is text in any spelling (see ``parse_address``); what is not an address is refused,
    and so is a spelling that connectors read as two different addresses ("010.0.0.1").
    Ranges listed in ``routable`` count as public (test labs live in reserved space).
    """
    readings = _readings(ip)
    if not readings:
        return "not an address"
    nets = tuple(routable)
    problems = [_problem(addr, nets) if addr is not None else None for addr in readings]
    if len(readings) == 1:
        return problems[0]
    for problem, how in zip(problems, ("octal", "decimal"), strict=True):
        if problem is not None:
            return f"{problem} (read as {how})"
    if readings[0] is None:
        return "ambiguous (a name to glibc, a decimal address to others)"
    # Both public, but which one a connector reaches depends on the connector.
    return "ambiguous (octal or decimal)"


def _problem(addr: Address, nets: tuple[Network, ...]) -> str | None:
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        # The zone picks an interface, not a destination: judge the address without it.
        addr = ipaddress.IPv6Address(int(addr))
    if any(addr in net for net in nets):
        return None
    if isinstance(addr, ipaddress.IPv4Address):
        return _ipv4_problem(addr, nets)
    return _ipv6_problem(addr, nets)


def is_bogon(ip: str, routable: Iterable[Network] = ()) -> bool:
    """True when an address cannot be a public server's (a DNS answer pointing there is a lie)."""
    return address_problem(ip, routable) is not None
