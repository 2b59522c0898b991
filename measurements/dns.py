"""DNS primitives: one name through one resolver over UDP, TCP, DNS-over-HTTPS or the system.

Each returns a DNSObservation and never raises for a network error; failures come from
measurements.failures only. The UDP query keeps listening for a short window after the first
response, because an on-path injector answers first and the genuine resolver answers later:
two different answers to one query is the evidence.

DNS-over-HTTPS, which makes the same observations through another stack, is in
measurements.doh.

Every primitive takes an explicit ``timeout`` although ruff's ASYNC109 would rather callers
wrap it in asyncio.timeout: the budget is part of the measurement (generic_timeout_error means
"nothing within this long"), and after a truncated UDP answer the TCP retry spends what is left.
The UDP window starts at the first response, so a query may last up to timeout + window.
A UDP query is resent (with a new ID) every second until answered, as stub resolvers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Sequence
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from measurements.addresses import split_host_port
from measurements.failures import Failure, describe, failure_for_rcode, failure_of
from measurements.observations import DNSObservation, DNSResponse

# A flood of forged datagrams must not grow an observation without bound.
_MAX_RESPONSES = 16
# CNAME chains longer than this are a loop or an attack, not a real site.
_MAX_CNAMES = 16
# How long a UDP query listens after its first response for another one (an injector's
# forged answer comes first, the genuine resolver's after it).
WINDOW = 0.3


_Stamped = tuple[float, dns.message.Message]  # (monotonic arrival time, response)


def answers_of(
    message: dns.message.Message,
) -> tuple[tuple[str, ...], tuple[str, ...], int | None]:
    """(addresses, cnames, min ttl) a response gives for its question's name, following CNAMEs."""
    if not message.question:
        return (), (), None
    name = message.question[0].name
    cnames: list[str] = []
    ttls: list[int] = []
    seen = {name}
    for _ in range(_MAX_CNAMES):
        alias = next(
            (r for r in message.answer if r.name == name and r.rdtype == dns.rdatatype.CNAME),
            None,
        )
        if alias is None:
            break
        target = alias[0].target
        cnames.append(target.to_text(omit_final_dot=True))
        ttls.append(alias.ttl)
        if target in seen:
            break
        seen.add(target)
        name = target
    addresses: list[str] = []
    for rrset in message.answer:
        if rrset.name == name and rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            addresses.extend(rdata.address for rdata in rrset)
            ttls.append(rrset.ttl)
    return tuple(addresses), tuple(cnames), min(ttls) if ttls else None


def parse_resolver(resolver: str) -> tuple[str, int]:
    """(ip, port) from "ip", "ip:port", "[v6]:port" or a bare IPv6; raises ValueError otherwise."""
    host, port = split_host_port(resolver, 53)
    # A name here would be resolved through the system, leaking the query we are testing.
    ipaddress.ip_address(host)
    return host, port


def _join(ip: str, port: int) -> str:
    """ "ip:port", bracketing IPv6."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _ms(since: float, now: float | None = None) -> float:
    """Milliseconds from a monotonic instant to now."""
    return ((time.monotonic() if now is None else now) - since) * 1000.0


def observed(
    hostname: str,
    qtype: str,
    transport: str,
    resolver: str,
    start: float,
    stamped: list[_Stamped],
) -> DNSObservation:
    """An observation of the responses received; the first one decides the top level."""
    responses = []
    for at, message in stamped:
        addresses, cnames, ttl = answers_of(message)
        rcode = dns.rcode.to_text(message.rcode())
        responses.append(DNSResponse(rcode, addresses, cnames, ttl, round(_ms(start, at), 3)))
    first = responses[0]
    failure = failure_for_rcode(stamped[0][1].rcode())
    if failure is None and not first.addresses:
        failure = Failure.DNS_NO_ANSWER
    return DNSObservation(
        hostname=hostname,
        qtype=qtype,
        transport=transport,
        resolver=resolver,
        failure=failure.value if failure else None,
        rcode=first.rcode,
        addresses=first.addresses,
        responses=tuple(responses),
        duration_ms=round(_ms(start), 3),
        # An rcode outside the vocabulary (FORMERR, NOTIMP...) is kept by name.
        error=f"rcode {first.rcode}" if failure is Failure.UNKNOWN else None,
    )


def failed(
    hostname: str, qtype: str, transport: str, resolver: str, start: float, exc: BaseException
) -> DNSObservation:
    """An observation of a query that got no response."""
    failure = failure_of(exc)
    return DNSObservation(
        hostname=hostname,
        qtype=qtype,
        transport=transport,
        resolver=resolver,
        failure=failure.value,
        rcode=None,
        addresses=(),
        responses=(),
        duration_ms=round(_ms(start), 3),
        error=describe(exc) if failure is Failure.UNKNOWN else None,
    )


class _Receiver(asyncio.DatagramProtocol):
    """Queues every datagram and socket error, stamped on arrival."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[float, bytes | Exception]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.inbox.put_nowait((time.monotonic(), data))

    def error_received(self, exc: Exception) -> None:
        # On a connected socket Linux reports an ICMP port unreachable as ConnectionRefusedError.
        self.inbox.put_nowait((time.monotonic(), exc))


def _response_to(query: dns.message.Message, wire: bytes) -> dns.message.Message | None:
    """The datagram as a response to query, or None if it is garbage or answers something else."""
    try:
        message = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    return message if query.is_response(message) else None


async def _first_response(
    receiver: _Receiver,
    queries: Sequence[dns.message.Message],
    resend: Any,
    first_within: float,
    every: float,
) -> tuple[int, _Stamped]:
    """The first response to any query sent, resending (with a new ID) every ``every`` s."""
    deadline = time.monotonic() + first_within
    next_send = time.monotonic() + every
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutError
        try:
            async with asyncio.timeout(min(deadline, next_send) - now):
                at, item = await receiver.inbox.get()
        except TimeoutError:
            if time.monotonic() >= next_send:
                resend()
                next_send += every
            continue
        if isinstance(item, Exception):
            raise item
        for index, query in enumerate(queries):
            message = _response_to(query, item)
            if message is not None:
                return index, (at, message)


async def _collect(
    receiver: _Receiver,
    queries: Sequence[dns.message.Message],
    resend: Any,
    first_within: float,
    window: float,
    every: float,
) -> list[_Stamped]:
    """The first response within timeout, then every other one to the same query within window.

    Responses to the other (retransmitted) queries are left out: each has its own ID, so only
    two different answers to one ID can show an injector, never a resolver that rotates its
    answers between two queries.
    """
    index, first = await _first_response(receiver, queries, resend, first_within, every)
    stamped = [first]
    if first[1].flags & dns.flags.TC:
        return stamped
    remaining = first[0] + window - time.monotonic()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(remaining, 0.0)):
            while len(stamped) < _MAX_RESPONSES:
                at, item = await receiver.inbox.get()
                # An error after an answer (a late ICMP) changes nothing we saw.
                if isinstance(item, Exception):
                    continue
                message = _response_to(queries[index], item)
                if message is not None:
                    stamped.append((at, message))
    return stamped


async def query_udp(
    hostname: str,
    resolver: str,
    *,
    qtype: str = "A",
    timeout: float = 5.0,  # noqa: ASYNC109 - see the module docstring
    window: float = WINDOW,
    retransmit: float = 1.0,
) -> DNSObservation:
    """Resolve over UDP, recording every response that arrives within window after the first.

    Like a stub resolver, the query is sent again every ``retransmit`` seconds until an answer
    comes or ``timeout`` passes, so one lost datagram is not a failure.
    """
    ip, port = parse_resolver(resolver)
    where = _join(ip, port)
    queries = [dns.message.make_query(hostname, qtype)]
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    try:
        # Connected, so the kernel drops datagrams from other sources and reports ICMP errors.
        transport, receiver = await loop.create_datagram_endpoint(
            _Receiver,
            remote_addr=(ip, port),
            family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
        )
    except OSError as exc:
        return failed(hostname, qtype, "udp", where, start, exc)

    def resend() -> None:
        queries.append(dns.message.make_query(hostname, qtype))  # a fresh random ID
        transport.sendto(queries[-1].to_wire())

    try:
        transport.sendto(queries[0].to_wire())
        stamped = await _collect(receiver, queries, resend, timeout, window, retransmit)
    except (OSError, dns.exception.DNSException) as exc:
        return failed(hostname, qtype, "udp", where, start, exc)
    finally:
        transport.close()
    if stamped[0][1].flags & dns.flags.TC:
        # Too big for a datagram: the resolver asks us to retry over TCP, as stub resolvers do.
        remaining = max(timeout - (time.monotonic() - start), 0.001)
        return await query_tcp(hostname, where, qtype=qtype, timeout=remaining)
    return observed(hostname, qtype, "udp", where, start, stamped)


async def query_tcp(
    hostname: str,
    resolver: str,
    *,
    qtype: str = "A",
    timeout: float = 5.0,  # noqa: ASYNC109 - see the module docstring
) -> DNSObservation:
    """Resolve over TCP (one query, one response)."""
    ip, port = parse_resolver(resolver)
    where = _join(ip, port)
    query = dns.message.make_query(hostname, qtype)
    start = time.monotonic()
    try:
        # dnspython bounds each phase; the outer bound covers the whole exchange.
        async with asyncio.timeout(timeout):
            response = await dns.asyncquery.tcp(query, ip, timeout=timeout, port=port)
    except (OSError, EOFError, dns.exception.DNSException) as exc:
        return failed(hostname, qtype, "tcp", where, start, exc)
    return observed(hostname, qtype, "tcp", where, start, [(time.monotonic(), response)])


async def query_system(
    hostname: str,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - see the module docstring
) -> DNSObservation:
    """Resolve through the system resolver (getaddrinfo in a thread), IPv4 and IPv6 alike."""
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    try:
        # The thread cannot be cancelled; on timeout it finishes in the background, unread.
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        return failed(hostname, "A+AAAA", "system", "system", start, exc)
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    response = DNSResponse("NOERROR", addresses, (), None, round(_ms(start), 3))
    return DNSObservation(
        hostname=hostname,
        qtype="A+AAAA",  # getaddrinfo asks for both families at once
        transport="system",
        resolver="system",
        failure=None if addresses else Failure.DNS_NO_ANSWER.value,
        rcode=None,
        addresses=addresses,
        responses=(response,),
        duration_ms=round(_ms(start), 3),
    )
