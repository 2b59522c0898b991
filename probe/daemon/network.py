"""Which network the vantage is on, read cheaply from the kernel and the resolver config.

A change of the default route (IPv4 ``/proc/net/route``, IPv6 ``/proc/net/ipv6_route``), of
the resolver in use or of the AS number makes the daemon sweep promptly, so results are
measured on, and attributed to, the network they describe. What is stored of a network is
``NetworkState.digest()``: a short hash, never a gateway's or the volunteer's address.
Reading these files costs a few system calls; the runner polls every ``daemon.network_poll``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

RTF_UP = 0x1


@dataclass(frozen=True, slots=True)
class NetworkState:
    """The default routes (interface and gateway), the resolver, the AS number if known."""

    route4: str | None
    route6: str | None
    resolver: str | None
    asn: int | None = None

    @property
    def online(self) -> bool:
        """Whether there is any default route at all."""
        return self.route4 is not None or self.route6 is not None

    def moved_from(self, old: NetworkState) -> bool:
        """Whether the route or the resolver changed (not only the AS number)."""
        return (old.route4, old.route6, old.resolver) != (self.route4, self.route6, self.resolver)

    def digest(self) -> str:
        """A stable short name of this network that reveals none of its addresses."""
        text = f"{self.route4}|{self.route6}|{self.resolver}|{self.asn}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def default_route4(text: str) -> str | None:
    """``iface via gateway`` of the first IPv4 default route that is up, from /proc/net/route."""
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 8:
            continue
        iface, dest, gateway, flags, mask = parts[0], parts[1], parts[2], parts[3], parts[7]
        try:
            up = int(flags, 16) & RTF_UP
        except ValueError:
            continue
        if dest == "00000000" and mask == "00000000" and up:
            return f"{iface} via {gateway}"
    return None


def default_route6(text: str) -> str | None:
    """``iface via next-hop`` of the first IPv6 default route, from /proc/net/ipv6_route."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 10:
            continue
        dest, prefix, next_hop, flags, iface = parts[0], parts[1], parts[4], parts[8], parts[9]
        try:
            up = int(flags, 16) & RTF_UP
        except ValueError:
            continue
        if dest == "0" * 32 and prefix == "00" and up and iface != "lo":
            return f"{iface} via {next_hop}"
    return None


def system_resolver(text: str) -> str | None:
    """The first ``nameserver`` of a resolv.conf."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            return parts[1]
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def read_network(
    configured_resolver: str | None,
    asn: int | None = None,
    proc: Path = Path("/proc/net"),
    resolv_conf: Path = Path("/etc/resolv.conf"),
) -> NetworkState:
    """The network as the kernel and the resolver config say now (blocking file reads: call
    it off the event loop or accept a few microseconds)."""
    resolver = configured_resolver or system_resolver(_read(resolv_conf))
    return NetworkState(
        default_route4(_read(proc / "route")),
        default_route6(_read(proc / "ipv6_route")),
        resolver,
        asn,
    )
