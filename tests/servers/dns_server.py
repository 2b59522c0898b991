"""A scripted DNS server on 127.0.0.1 (UDP and TCP, one port) whose behaviour each test sets.

    async with ScriptedDNSServer() as server:
        server.set("blocked.test", NXDomain())
        server.set("cdn.test", Inject(forged=("10.10.34.35",), genuine=("93.184.216.34",)))
        await query_udp("blocked.test", server.address)

Names not in the table get NXDOMAIN. The table and the per-name query counts are usable
without starting the server, so the DoH test server can answer from the same table.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, TypeAlias

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

# A TCP client that neither sends nor closes is dropped after this long.
_IDLE_SECONDS = 30.0


@dataclass(frozen=True, slots=True, init=False)
class Answer:
    """NOERROR with these addresses (A or AAAA by family), optionally behind a CNAME."""

    ips: tuple[str, ...]
    ttl: int
    cname: str | None

    def __init__(self, *ips: str, ttl: int = 60, cname: str | None = None) -> None:
        object.__setattr__(self, "ips", ips)
        object.__setattr__(self, "ttl", ttl)
        object.__setattr__(self, "cname", cname)


@dataclass(frozen=True, slots=True)
class NXDomain:
    """The name does not exist."""


@dataclass(frozen=True, slots=True)
class ServFail:
    """The resolver failed."""


@dataclass(frozen=True, slots=True)
class Refused:
    """The resolver refuses to answer."""


@dataclass(frozen=True, slots=True)
class Silent:
    """Never answer."""


@dataclass(frozen=True, slots=True)
class LoseFirst:
    """Leave the first ``count`` queries for the name unanswered (lost), then behave as ``then``."""

    count: int
    then: Behaviour


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait, then behave as ``then``."""

    seconds: float
    then: Behaviour


@dataclass(frozen=True, slots=True)
class Inject:
    """Two responses to one UDP query, forged first, as an on-path injector produces."""

    forged: tuple[str, ...]
    genuine: tuple[str, ...]
    gap: float = 0.05


@dataclass(frozen=True, slots=True, init=False)
class Truncate:
    """Over UDP: TC set and no answers; over TCP: the full answer."""

    ips: tuple[str, ...]

    def __init__(self, *ips: str) -> None:
        object.__setattr__(self, "ips", ips)


Behaviour: TypeAlias = (
    Answer | NXDomain | ServFail | Refused | Silent | Delay | Inject | Truncate | LoseFirst
)
Plan: TypeAlias = list[tuple[float, dns.message.Message]]  # (seconds to wait, then send this)


def _key(name: str | dns.name.Name) -> str:
    """The table key of a name: lowercased, no final dot."""
    text = name.to_text(omit_final_dot=True) if isinstance(name, dns.name.Name) else name
    return text.rstrip(".").lower()


def _answer(
    query: dns.message.Message, ips: tuple[str, ...], ttl: int, cname: str | None
) -> dns.message.Message:
    """A NOERROR response carrying the addresses that fit the query type."""
    response = dns.message.make_response(query)
    question = query.question[0]
    owner = question.name
    if cname is not None:
        target = dns.name.from_text(cname)
        response.answer.append(dns.rrset.from_text(owner, ttl, "IN", "CNAME", target.to_text()))
        owner = target
    version = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(question.rdtype)
    fitting = [ip for ip in ips if ipaddress.ip_address(ip).version == version]
    if fitting:
        rdtype = dns.rdatatype.to_text(question.rdtype)
        response.answer.append(dns.rrset.from_text_list(owner, ttl, "IN", rdtype, fitting))
    return response


def _rcode(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    """An empty response with this rcode."""
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    return response


def plan(behaviour: Behaviour, query: dns.message.Message, *, datagram: bool) -> Plan:
    """What to send for a query, and when; datagram is False for TCP and DoH."""
    match behaviour:
        case Answer(ips=ips, ttl=ttl, cname=cname):
            return [(0.0, _answer(query, ips, ttl, cname))]
        case NXDomain():
            return [(0.0, _rcode(query, dns.rcode.NXDOMAIN))]
        case ServFail():
            return [(0.0, _rcode(query, dns.rcode.SERVFAIL))]
        case Refused():
            return [(0.0, _rcode(query, dns.rcode.REFUSED))]
        case Silent():
            return []
        case Delay(seconds=seconds, then=then):
            steps = plan(then, query, datagram=datagram)
            return [(seconds + steps[0][0], steps[0][1]), *steps[1:]] if steps else []
        case Inject(forged=forged, genuine=genuine, gap=gap):
            real = _answer(query, genuine, 60, None)
            # Only a datagram can be raced; a stream carries the genuine answer alone.
            return (
                [(0.0, _answer(query, forged, 60, None)), (gap, real)]
                if datagram
                else [(0.0, real)]
            )
        case Truncate(ips=ips):
            if not datagram:
                return [(0.0, _answer(query, ips, 60, None))]
            response = dns.message.make_response(query)
            response.flags |= dns.flags.TC
            return [(0.0, response)]
    raise TypeError(f"not a behaviour: {behaviour!r}")


class _UDP(asyncio.DatagramProtocol):
    """Hands each datagram to the server."""

    def __init__(self, server: ScriptedDNSServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.server._on_datagram(data, addr)


class ScriptedDNSServer:
    """A DNS server on 127.0.0.1 serving UDP and TCP on one random port, as scripted.

    ``host`` and ``port`` bind elsewhere (the lab's resolvers listen on 198.18.1.1:53 and
    198.19.0.53:53 inside their namespaces); port 0 picks a free one.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._wanted_port = port
        self.behaviours: dict[str, Behaviour] = {}
        self.queries: Counter[str] = Counter()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._port: int | None = None

    def set(self, name: str, behaviour: Behaviour) -> None:
        """Script how a name is answered from now on."""
        self.behaviours[_key(name)] = behaviour

    def receive(self, query: dns.message.Message) -> Behaviour:
        """Count a query and return the behaviour scripted for its name."""
        name = _key(query.question[0].name)
        self.queries[name] += 1
        behaviour = self.behaviours.get(name, NXDomain())
        if isinstance(behaviour, LoseFirst):  # stateful: decided by how many came before
            return Silent() if self.queries[name] <= behaviour.count else behaviour.then
        return behaviour

    @property
    def port(self) -> int:
        """The UDP and TCP port."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def address(self) -> str:
        """ "HOST:PORT" ("127.0.0.1:PORT" by default), as the probe's --resolver takes it."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind UDP on a random port, then TCP on the same one (retrying if it is taken).

        A fixed ``port`` is tried once: if it is taken, that is the caller's problem to see.
        """
        loop = asyncio.get_running_loop()
        for _ in range(20 if self._wanted_port == 0 else 1):
            transport, _protocol = await loop.create_datagram_endpoint(
                lambda: _UDP(self),
                local_addr=(self.host, self._wanted_port),
                family=socket.AF_INET,
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_stream, self.host, port)
            except OSError:
                transport.close()
                if self._wanted_port:
                    raise
                continue
            self._udp, self._port = transport, port
            return
        raise RuntimeError("no port free for both UDP and TCP")

    async def stop(self) -> None:
        """Stop answering and cancel every reply in flight."""
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
        self._udp = self._tcp = None

    async def __aenter__(self) -> ScriptedDNSServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_datagram(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return
        if not query.question:
            return
        steps = plan(self.receive(query), query, datagram=True)
        if steps:
            self._spawn(self._send_datagrams(steps, addr))

    async def _send_datagrams(self, steps: Plan, addr: tuple[str | int, ...]) -> None:
        for wait, response in steps:
            await asyncio.sleep(wait)
            if self._udp is None:
                return
            self._udp.sendto(response.to_wire(), addr)

    async def _serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                async with asyncio.timeout(_IDLE_SECONDS):
                    length = int.from_bytes(await reader.readexactly(2), "big")
                    query = dns.message.from_wire(await reader.readexactly(length))
                if not query.question:
                    return
                # Silent: send nothing and read on until the client gives up and closes.
                for wait, response in plan(self.receive(query), query, datagram=False):
                    await asyncio.sleep(wait)
                    wire = response.to_wire()
                    writer.write(len(wire).to_bytes(2, "big") + wire)
                    await writer.drain()
        except (OSError, EOFError, dns.exception.DNSException):
            pass  # the client left, idled or sent garbage: drop the connection
        except asyncio.CancelledError:
            # Only stop() cancels this task. Ending it quietly matters on Python 3.11, whose
            # stream callback logs an error when it finds its handler task cancelled.
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()


@pytest.fixture
async def dns_server() -> AsyncIterator[ScriptedDNSServer]:
    """A running scripted DNS server, stopped after the test."""
    async with ScriptedDNSServer() as server:
        yield server
