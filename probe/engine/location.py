"""Where a sweep measured: the vantage's AS and country, found without storing its address.

Three sources, per value, in this order (the run records which one gave each):

    declared   vantage.asn, vantage.country: the volunteer said so, and is never overruled
    helper     the control helper's GET /v1/whoami: it sees the address the network gives the
               probe (behind a home router's NAT too) and answers with its database's AS and
               country, never the address
    geoip_db   vantage.geoip_db, looked up locally at the address the kernel sends from
               towards the first reference host that answered (a UDP socket connected
               there: no packet is sent). Behind NAT that address is private and no database
               places it; addresses in network.routable count as public, as they do for
               measuring (a lab's, or the tests' 127.0.0.0/8), so the one address rule
               (measurements.addresses) decides both.

The AS's name (``network_name``) comes with the AS number that a database gave; with a
declared AS number, only from a database that found the same one. Detection runs once per
sweep, after the vantage check succeeded and before any target, and only when something was
not declared; it is bounded by ``limits.http_timeout``. Every failure is a reason in the
location's ``problems`` (stored with the run), never an exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from measurements.addresses import Network, address_problem
from measurements.geoip import GeoIP, Place, source_address
from probe.classify.verdict import Location
from probe.config import VantageSettings
from probe.helper.client import HelperClient


def choose(
    start: Location, found: Sequence[tuple[str, Place]], problems: Sequence[str]
) -> Location:
    """Each value from the first source that has it: ``start`` (declared), then ``found`` in
    order; ``problems`` are kept only when a value is still unknown."""
    asn, asn_source, name = start.asn, start.asn_source, start.network_name
    country, country_source = start.country, start.country_source
    for source, place in found:
        if asn is None and place.asn is not None:
            asn, asn_source, name = place.asn, source, place.network_name
        elif name is None and place.asn is not None and place.asn == asn:
            name = place.network_name  # the declared AS, named by a database that agrees
        if country is None and place.country is not None:
            country, country_source = place.country, source
    missing = asn is None or country is None
    return Location(
        asn, country, name, asn_source, country_source, tuple(problems) if missing else ()
    )


async def from_helper(helper: HelperClient, seconds: float) -> tuple[Place | None, str | None]:
    """Where the helper places this probe, or why it does not."""
    try:
        async with asyncio.timeout(seconds):
            answer, problem = await helper.ask_whoami(seconds)
    except TimeoutError:
        return None, f"the helper's whoami did not answer within {seconds:g} s"
    if answer is None:
        return None, f"the helper's whoami: {problem}"
    place = Place(answer.asn, answer.network_name, answer.country)
    if place.empty:
        return None, f"the helper's whoami: {answer.unknown or 'no answer'}"
    return place, None


async def from_geoip_db(
    geoip: GeoIP, toward: str | None, routable: tuple[Network, ...]
) -> tuple[Place | None, str | None]:
    """Where vantage.geoip_db places the local source address towards ``toward``, or why not."""
    if toward is None:
        return None, "vantage.geoip_db: no reference host's address to find the local address by"
    source = await source_address(toward)
    if source is None:
        return None, "vantage.geoip_db: no route to the reference host to find the local address"
    problem = address_problem(source, routable)
    if problem is not None:
        # Said without the address: the record keeps no address of the volunteer's.
        return None, (
            f"vantage.geoip_db: this machine's own address is {problem} (behind NAT), so no "
            "database places it; a helper with a database (its whoami) can"
        )
    place = geoip.lookup(source)
    if place.empty:
        return None, "vantage.geoip_db: this machine's address is not in the database"
    return place, None


async def detect(
    vantage: VantageSettings,
    helper: HelperClient | None,
    geoip: GeoIP | None,
    toward: str | None,
    routable: tuple[Network, ...],
    seconds: float,
) -> Location:
    """The sweep's location: declared values, and what the sources detect for the rest."""
    start = Location.declared(vantage.asn, vantage.country)
    if start.asn is not None and start.country is not None:
        return start  # nothing to ask anyone
    found: list[tuple[str, Place]] = []
    problems: list[str] = []
    if helper is None and geoip is None:
        problems.append("no control helper and no vantage.geoip_db to detect it")
    if helper is not None:
        place, problem = await from_helper(helper, seconds)
        found += [("helper", place)] if place is not None else []
        problems += [problem] if problem is not None else []
    if geoip is not None:
        place, problem = await from_geoip_db(geoip, toward, routable)
        found += [("geoip_db", place)] if place is not None else []
        problems += [problem] if problem is not None else []
    return choose(start, found, problems)


def hint(location: Location) -> str | None:
    """The line ``probe run`` prints when the location is unknown, or None."""
    if not location.unknown:
        return None
    why = f" ({location.note})" if location.note else ""
    return (
        f"probe: location unknown{why}: results say nothing about where they were measured; "
        "declare it with --country CC --asn N (or [vantage] country, asn in the config)"
    )
