"""The censor's own machines, run in the ISP namespace next to its iptables rules.

- ``Injector``: an on-path DNS injector. It sniffs the vantage's line (an AF_PACKET socket,
  as a tap would) and, for the names the policy lists, sends a forged answer that spoofs the
  resolver's address and port. The genuine resolver is made slower for those names, so the
  probe sees two different answers to one query, the forged one first.
- ``HTTPProxy``: a transparent HTTP proxy (iptables nat REDIRECT sends it port 80 of the
  targeted addresses). For a Host the policy names it answers a blockpage (the Kazakh one,
  or the policy's title and text) or a 302 to a warning page; anything else it relays to
  the original destination.
- ``TLSInterceptor``: a transparent TLS proxy (REDIRECT of port 443) that completes the
  handshake itself with a leaf forged for the client's SNI by a root the probe does not trust
  (the policy names that root), and relays to the genuine server behind.

Each reads the ISP policy file at every packet or connection, so a scenario switches them
on and off by rewriting the file; the iptables rules decide what reaches the proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from typing import Any

import dns.exception
import dns.message
import dns.rdatatype
import dns.rrset
import trustme

from tests.lab.internet import BLOCKPAGE_TEXT, BLOCKPAGE_TITLE, page
from tests.lab.policy import PolicyFile

_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4
_SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
_IDLE = 10.0  # seconds a relayed connection may stay silent before it is closed
_HEAD_LIMIT = 64 * 1024


def original_destination(sock: Any) -> tuple[str, int]:
    """Where a REDIRECTed connection was going (the netfilter conntrack's original tuple)."""
    raw = sock.getsockopt(socket.SOL_IP, _SO_ORIGINAL_DST, 16)
    port = struct.unpack_from("!H", raw, 2)[0]
    return socket.inet_ntoa(raw[4:8]), port


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_packet(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 UDP datagram with its header (what a raw IPPROTO_RAW socket sends as is)."""
    length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, length)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    checksum = _checksum(pseudo + header + payload) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, length, checksum) + payload
    # Total length and the IP checksum are filled in by the kernel for raw sockets.
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, 64, 17, 0, src, dst)
    return ip + udp


class Injector:
    """Forges DNS answers for the policy's names, seen on one interface."""

    def __init__(self, policy: PolicyFile, device: str) -> None:
        self.policy = policy
        self.device = device
        self.injected = 0
        self._sniff: socket.socket | None = None
        self._raw: socket.socket | None = None

    def start(self) -> None:
        """Open the tap and the raw socket and watch the tap from the running loop."""
        sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_IP))
        sniff.bind((self.device, _ETH_P_IP))
        sniff.setblocking(False)
        self._sniff = sniff
        self._raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        asyncio.get_running_loop().add_reader(sniff.fileno(), self._readable)

    def _readable(self) -> None:
        assert self._sniff is not None
        for _ in range(256):  # bounded per wake-up; the loop calls again if more is queued
            try:
                packet, address = self._sniff.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            if address[2] != _PACKET_OUTGOING:
                self._consider(packet)

    def _consider(self, packet: bytes) -> None:
        if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_UDP:
            return
        ihl = (packet[0] & 0x0F) * 4
        sport, dport = struct.unpack_from("!HH", packet, ihl)
        if dport != 53:
            return
        rules = self.policy.current().get("inject") or {}
        names = {n.lower().rstrip(".") for n in rules.get("names", [])}
        if not names:
            return
        try:
            query = dns.message.from_wire(packet[ihl + 8 :])
        except dns.exception.DNSException:
            return
        if not query.question:
            return
        question = query.question[0]
        if question.name.to_text(omit_final_dot=True).lower() not in names:
            return
        forged = dns.message.make_response(query)
        if question.rdtype == dns.rdatatype.A:
            forged.answer.append(
                dns.rrset.from_text_list(question.name, 60, "IN", "A", list(rules["forged"]))
            )
        src, dst = packet[12:16], packet[16:20]
        # From the resolver's address and port to the asker's: the spoof.
        datagram = udp_packet(dst, src, dport, sport, forged.to_wire())
        assert self._raw is not None
        self._raw.sendto(datagram, (socket.inet_ntoa(src), 0))
        self.injected += 1


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF or idleness, then pass the EOF on."""
    try:
        while True:
            async with asyncio.timeout(_IDLE):
                data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            async with asyncio.timeout(_IDLE):
                await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, TimeoutError, RuntimeError):
        pass


async def relay(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    first: bytes = b"",
) -> None:
    """Relay both ways until both directions end; ``first`` goes upstream before anything."""
    if first:
        upstream[1].write(first)
    try:
        await asyncio.gather(_pipe(client[0], upstream[1]), _pipe(upstream[0], client[1]))
    finally:
        upstream[1].close()


class HTTPProxy:
    """Transparent HTTP proxy: blockpage or warning redirect for the policy's Hosts."""

    def __init__(self, policy: PolicyFile) -> None:
        self.policy = policy

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection."""
        try:
            ip, port = original_destination(writer.get_extra_info("socket"))
            async with asyncio.timeout(_IDLE):
                head = await reader.readuntil(b"\r\n\r\n")
            host = ""
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"host":
                    host = value.strip().decode("latin-1").split(":")[0].lower()
            action = (self.policy.current().get("http_proxy") or {}).get(host)
            if action is None:
                async with asyncio.timeout(_IDLE):
                    upstream = await asyncio.open_connection(ip, port)
                await relay((reader, writer), upstream, head)
                return
            writer.write(self._response(action))
            async with asyncio.timeout(_IDLE):
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def _response(self, action: dict[str, Any]) -> bytes:
        if action.get("action") == "redirect":
            status, headers, body = "302 Found", f"Location: {action['location']}\r\n", b""
        else:
            title = action.get("title", BLOCKPAGE_TITLE)
            body = page(title, action.get("text", BLOCKPAGE_TEXT)).encode()
            # A look-alike's page (a CDN's challenge) has its own status and headers.
            status = action.get("status", "200 OK")
            extra = "".join(f"{h}\r\n" for h in action.get("headers", []))
            headers = f"Content-Type: text/html\r\n{extra}"
        return (
            f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode() + body


class TLSInterceptor:
    """Transparent TLS proxy presenting leaves forged by the policy's interception root."""

    default_root = "Lab Interception Root"

    def __init__(self, policy: PolicyFile, lab_ca_bundle: str) -> None:
        self.policy = policy
        self._roots: dict[str, trustme.CA] = {}
        self._contexts: dict[tuple[str, str, str | None], ssl.SSLContext] = {}
        self._names: dict[int, str] = {}  # id(context) -> the name it was forged for
        self._upstream = ssl.create_default_context(cafile=lab_ca_bundle)
        self.server_context = self._context_for(self.default_root, "intercept.invalid")
        self.server_context.sni_callback = self._select

    def _context_for(self, root: str, name: str, intermediate: str | None = None) -> ssl.SSLContext:
        key = (root, name, intermediate)
        if key not in self._contexts:
            ca = self._roots.setdefault(root, trustme.CA(organization_name=root))
            if intermediate is not None:
                # As in 2019: the leaf issued by an intermediate the root issued, and sent
                # with it (leaf, intermediate), so the root shows only as the intermediate's
                # issuer.
                ca = self._roots.setdefault(
                    f"{root}\n{intermediate}",
                    trustme.CA(parent_cert=ca, organization_name=intermediate),
                )
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(name, common_name=name).configure_cert(ctx)
            self._contexts[key] = ctx
            self._names[id(ctx)] = name
        return self._contexts[key]

    def _select(self, tls: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        proxy = self.policy.current().get("tls_proxy") or {}
        root = proxy.get("issuer") or self.default_root
        name = (name or "intercept.invalid").lower()
        tls.context = self._context_for(root, name, proxy.get("intermediate"))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection, its handshake already done with a forged leaf."""
        try:
            ip, port = original_destination(writer.get_extra_info("socket"))
            tls = writer.get_extra_info("ssl_object")
            name = self._names.get(id(tls.context), "intercept.invalid")
            async with asyncio.timeout(_IDLE):
                upstream = await asyncio.open_connection(
                    ip, port, ssl=self._upstream, server_hostname=name
                )
            await relay((reader, writer), upstream)
        except (OSError, TimeoutError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()
