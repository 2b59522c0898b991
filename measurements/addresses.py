"""Which addresses may be measured: the safety rule and the bogon test share one definition."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TypeAlias

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Networks from CIDR strings; raises ValueError naming the bad one."""
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise ValueError(f"not a network: {cidr!r}") from exc
    return tuple(out)


def is_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 literal."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def address_problem(ip: str, routable: Iterable[Network] = ()) -> str | None:
    """Why an address must not be measured ("private", "loopback", ...), or None if it may.

    Ranges listed in ``routable`` count as public (test labs live in reserved space).
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "not an address"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if any(addr in net for net in routable):
        return None
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_multicast:
        return "multicast"
    if addr.is_private:
        return "private"
    if addr.is_reserved or not addr.is_global:
        return "reserved"
    return None


def is_bogon(ip: str, routable: Iterable[Network] = ()) -> bool:
    """True when an address cannot be a public server's (a DNS answer pointing there is a lie)."""
    return address_problem(ip, routable) is not None
