"""The helper's answer to ``GET /v1/whoami``: where the asker is, never its address.

The probe cannot see its own public address (a home router's NAT hides it), and must not
store it; the helper sees it, looks it up in its IP-to-ASN database (measurements.geoip)
and answers with what the database says: AS number, AS organisation, country. The address
goes into no answer and no log.
"""

from __future__ import annotations

from measurements.addresses import Network, address_problem, canonical_address, is_ip
from measurements.geoip import GeoIP
from probe.helper.protocol import Whoami


def locate(remote: str | None, geoip: GeoIP, routable: tuple[Network, ...]) -> Whoami:
    """Where the address ``remote`` is by ``geoip``; ``routable`` ranges count as public."""
    if remote is None or not is_ip(remote):
        return Whoami(unknown="the helper cannot tell your address (a Unix socket or a proxy)")
    problem = address_problem(remote, routable)
    if problem is not None:
        # Behind the operator's own NAT or proxy: no database places a reserved range.
        return Whoami(unknown=f"your address is {problem} as the helper sees it: not placed")
    place = geoip.lookup(canonical_address(remote) or remote)
    if place.empty:
        return Whoami(unknown="your address is not in the helper's database")
    missing = [n for n in ("asn", "country") if getattr(place, n) is None]
    unknown = f"the helper's database has no {' or '.join(missing)} for it" if missing else None
    return Whoami(place.asn, place.network_name, place.country, unknown)
