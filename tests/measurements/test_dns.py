"""DNS primitives against real local servers: each behaviour is produced on the wire."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import dns.message
import httpx
import pytest
import trustme

from measurements.dns import parse_resolver, query_system, query_tcp, query_udp
from measurements.doh import doh_client, query_doh
from measurements.trust import context
from tests.servers.dns_server import (
    Answer,
    Delay,
    Inject,
    LoseFirst,
    NXDomain,
    Refused,
    ScriptedDNSServer,
    ServFail,
    Silent,
    Truncate,
)
from tests.servers.doh_server import DoHServer, HTTPReply

# Documentation addresses (RFC 5737/3849): answers only, never contacted.
GENUINE = "192.0.2.10"
FORGED = "198.51.100.66"


def unbound_port(kind: int) -> int:
    """A loopback port with nothing bound to it (bound, read, released)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- UDP ---------------------------------------------------------------------------------


async def test_udp_answer(dns_server: ScriptedDNSServer) -> None:
    dns_server.set("site.test", Answer(GENUINE, "192.0.2.11", ttl=120))
    obs = await query_udp("site.test", dns_server.address, timeout=2, window=0.05)
    assert obs.failure is None
    assert obs.rcode == "NOERROR"
    assert sorted(obs.addresses) == [GENUINE, "192.0.2.11"]
    assert obs.transport == "udp"
    assert obs.resolver == dns_server.address
    assert len(obs.responses) == 1
    assert obs.responses[0].ttl == 120
    assert 0 < obs.responses[0].received_ms <= obs.duration_ms
    assert dns_server.queries["site.test"] == 1


async def test_udp_name_lookup_is_case_insensitive(dns_server: ScriptedDNSServer) -> None:
    dns_server.set("Site.Test.", Answer(GENUINE))
    obs = await query_udp("SITE.test", dns_server.address, timeout=2, window=0.05)
    assert obs.addresses == (GENUINE,)


async def test_udp_aaaa(dns_server: ScriptedDNSServer) -> None:
    dns_server.set("v6.test", Answer(GENUINE, "2001:db8::10"))
    obs = await query_udp("v6.test", dns_server.address, qtype="AAAA", timeout=2, window=0.05)
    assert obs.failure is None
    assert obs.qtype == "AAAA"
    assert obs.addresses == ("2001:db8::10",)


async def test_udp_follows_cname(dns_server: ScriptedDNSServer) -> None:
    dns_server.set("www.site.test", Answer(GENUINE, ttl=30, cname="edge.cdn.test"))
    obs = await query_udp("www.site.test", dns_server.address, timeout=2, window=0.05)
    assert obs.failure is None
    assert obs.addresses == (GENUINE,)
    assert obs.responses[0].cnames == ("edge.cdn.test",)
    assert obs.responses[0].ttl == 30


@pytest.mark.parametrize(
    ("behaviour", "rcode", "failure"),
    [
        (NXDomain(), "NXDOMAIN", "dns_nxdomain_error"),
        (ServFail(), "SERVFAIL", "dns_servfail_error"),
        (Refused(), "REFUSED", "dns_refused_error"),
        (Answer(), "NOERROR", "dns_no_answer"),
    ],
)
async def test_udp_negative_answers(
    dns_server: ScriptedDNSServer, behaviour: object, rcode: str, failure: str
) -> None:
    dns_server.set("blocked.test", behaviour)  # type: ignore[arg-type]
    obs = await query_udp("blocked.test", dns_server.address, timeout=2, window=0.05)
    assert obs.rcode == rcode
    assert obs.failure == failure
    assert obs.addresses == ()
    assert obs.error is None
    assert len(obs.responses) == 1


async def test_udp_unknown_name_is_nxdomain(dns_server: ScriptedDNSServer) -> None:
    obs = await query_udp("unscripted.test", dns_server.address, timeout=2, window=0.05)
    assert obs.failure == "dns_nxdomain_error"


async def test_udp_no_address_of_the_asked_family(dns_server: ScriptedDNSServer) -> None:
    dns_server.set("v4only.test", Answer(GENUINE))
    obs = await query_udp("v4only.test", dns_server.address, qtype="AAAA", timeout=2, window=0.05)
    assert obs.rcode == "NOERROR"
    assert obs.failure == "dns_no_answer"


async def test_udp_silent_times_out(dns_server: ScriptedDNSServer) -> None:
    dns_server.set("void.test", Silent())
    obs = await query_udp("void.test", dns_server.address, timeout=0.5)
    assert obs.failure == "generic_timeout_error"
    assert obs.rcode is None
    assert obs.responses == ()
    assert 450 <= obs.duration_ms < 2000
    assert dns_server.queries["void.test"] == 1


async def test_udp_delay_within_timeout(dns_server: ScriptedDNSServer) -> None:
    dns_server.set("slow.test", Delay(0.3, Answer(GENUINE)))
    obs = await query_udp("slow.test", dns_server.address, timeout=2, window=0.05)
    assert obs.failure is None
    assert obs.addresses == (GENUINE,)
    assert obs.responses[0].received_ms >= 280


async def test_udp_delay_beyond_timeout(dns_server: ScriptedDNSServer) -> None:
    dns_server.set("slower.test", Delay(1.0, Answer(GENUINE)))
    obs = await query_udp("slower.test", dns_server.address, timeout=0.3)
    assert obs.failure == "generic_timeout_error"


async def test_udp_injection_records_both_answers(dns_server: ScriptedDNSServer) -> None:
    dns_server.set("social.test", Inject(forged=(FORGED,), genuine=(GENUINE,), gap=0.05))
    obs = await query_udp("social.test", dns_server.address, timeout=2, window=0.3)
    assert [r.addresses for r in obs.responses] == [(FORGED,), (GENUINE,)]
    assert obs.addresses == (FORGED,)
    assert obs.failure is None
    assert obs.responses[0].received_ms < obs.responses[1].received_ms
    assert dns_server.queries["social.test"] == 1


async def test_udp_window_bounds_the_wait_for_more(dns_server: ScriptedDNSServer) -> None:
    dns_server.set("late.test", Inject(forged=(FORGED,), genuine=(GENUINE,), gap=0.6))
    obs = await query_udp("late.test", dns_server.address, timeout=2, window=0.1)
    assert [r.addresses for r in obs.responses] == [(FORGED,)]
    assert obs.duration_ms < 500


async def test_udp_truncated_falls_back_to_tcp(dns_server: ScriptedDNSServer) -> None:
    dns_server.set("big.test", Truncate(GENUINE, "192.0.2.11"))
    obs = await query_udp("big.test", dns_server.address, timeout=2)
    assert obs.transport == "tcp"
    assert obs.failure is None
    assert sorted(obs.addresses) == [GENUINE, "192.0.2.11"]
    assert obs.resolver == dns_server.address
    # One query over UDP, the retry over TCP.
    assert dns_server.queries["big.test"] == 2


async def test_udp_closed_port_is_connection_refused() -> None:
    # Linux turns the ICMP port-unreachable into ECONNREFUSED on a connected UDP socket.
    obs = await query_udp("site.test", f"127.0.0.1:{unbound_port(socket.SOCK_DGRAM)}", timeout=2)
    assert obs.failure == "connection_refused"
    assert obs.responses == ()
    assert obs.duration_ms < 1000  # refused at once, not timed out


# --- TCP ---------------------------------------------------------------------------------


async def test_tcp_answer_and_nxdomain(dns_server: ScriptedDNSServer) -> None:
    dns_server.set("site.test", Answer(GENUINE))
    dns_server.set("gone.test", NXDomain())
    ok = await query_tcp("site.test", dns_server.address, timeout=2)
    gone = await query_tcp("gone.test", dns_server.address, timeout=2)
    assert (ok.transport, ok.failure, ok.addresses) == ("tcp", None, (GENUINE,))
    assert (gone.failure, gone.rcode) == ("dns_nxdomain_error", "NXDOMAIN")


async def test_tcp_gets_only_the_genuine_answer_of_an_injection(
    dns_server: ScriptedDNSServer,
) -> None:
    dns_server.set("social.test", Inject(forged=(FORGED,), genuine=(GENUINE,)))
    obs = await query_tcp("social.test", dns_server.address, timeout=2)
    assert obs.addresses == (GENUINE,)


async def test_tcp_silent_times_out(dns_server: ScriptedDNSServer) -> None:
    dns_server.set("void.test", Silent())
    obs = await query_tcp("void.test", dns_server.address, timeout=0.5)
    assert obs.failure == "generic_timeout_error"
    assert obs.duration_ms < 2000


async def test_tcp_closed_port_is_connection_refused() -> None:
    obs = await query_tcp("site.test", f"127.0.0.1:{unbound_port(socket.SOCK_STREAM)}", timeout=2)
    assert obs.failure == "connection_refused"


# --- resolver addresses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
    ],
)
def test_parse_resolver(text: str, expected: tuple[str, int]) -> None:
    assert parse_resolver(text) == expected


@pytest.mark.parametrize("text", ["dns.example", "dns.example:53", "127.0.0.1:0", "[::1:53"])
def test_parse_resolver_rejects_names_and_bad_ports(text: str) -> None:
    with pytest.raises(ValueError):
        parse_resolver(text)


# --- system --------------------------------------------------------------------------------


async def test_system_resolves_localhost() -> None:
    # Only /etc/hosts is read for "localhost": nothing leaves the machine.
    obs = await query_system("localhost", timeout=5)
    assert obs.failure is None
    assert obs.transport == "system"
    assert obs.resolver == "system"
    assert obs.rcode is None
    assert set(obs.addresses) & {"127.0.0.1", "::1"}
    assert len(obs.addresses) == len(set(obs.addresses))


# --- DNS over HTTPS ------------------------------------------------------------------------


@pytest.mark.parametrize("post", [True, False])
async def test_doh_answer(doh_server: DoHServer, ca_bundle: str, post: bool) -> None:
    doh_server.set("site.test", Answer(GENUINE))
    obs = await query_doh("site.test", doh_server.url, timeout=5, verify=ca_bundle, post=post)
    assert obs.failure is None, obs.error
    assert obs.transport == "doh"
    assert obs.resolver == doh_server.url
    assert obs.addresses == (GENUINE,)
    assert doh_server.script.queries["site.test"] == 1


async def test_doh_nxdomain(doh_server: DoHServer, ca_bundle: str) -> None:
    doh_server.set("blocked.test", NXDomain())
    obs = await query_doh("blocked.test", doh_server.url, timeout=5, verify=ca_bundle)
    assert obs.failure == "dns_nxdomain_error"
    assert obs.rcode == "NXDOMAIN"


async def test_doh_injection_is_not_raced(doh_server: DoHServer, ca_bundle: str) -> None:
    doh_server.set("social.test", Inject(forged=(FORGED,), genuine=(GENUINE,)))
    obs = await query_doh("social.test", doh_server.url, timeout=5, verify=ca_bundle)
    assert obs.addresses == (GENUINE,)
    assert len(obs.responses) == 1


async def test_doh_bootstrap_address_keeps_the_url_host_for_tls(
    doh_server: DoHServer, ca_bundle: str
) -> None:
    # doh.test is never resolved: the connection goes to the bootstrap address and TLS
    # checks the certificate against doh.test.
    doh_server.set("site.test", Answer(GENUINE))
    url = f"https://doh.test:{doh_server.port}/dns-query"
    obs = await query_doh(
        "site.test", url, timeout=5, verify=ca_bundle, bootstrap_address="127.0.0.1"
    )
    assert obs.failure is None, obs.error
    assert obs.addresses == (GENUINE,)
    assert obs.resolver == url


async def test_doh_silent_times_out(doh_server: DoHServer, ca_bundle: str) -> None:
    doh_server.set("void.test", Silent())
    obs = await query_doh("void.test", doh_server.url, timeout=0.5, verify=ca_bundle)
    assert obs.failure == "generic_timeout_error"
    assert obs.duration_ms < 2000


async def test_doh_delay_within_timeout(doh_server: DoHServer, ca_bundle: str) -> None:
    doh_server.set("slow.test", Delay(0.3, Answer(GENUINE)))
    obs = await query_doh("slow.test", doh_server.url, timeout=5, verify=ca_bundle)
    assert obs.failure is None, obs.error
    assert obs.responses[0].received_ms >= 280


async def test_doh_untrusted_certificate(
    rogue_ca: trustme.CA, dns_server: ScriptedDNSServer, ca_bundle: str
) -> None:
    dns_server.set("site.test", Answer(GENUINE))
    async with DoHServer(rogue_ca, dns_server) as rogue:
        obs = await query_doh("site.test", rogue.url, timeout=5, verify=ca_bundle)
    assert obs.failure == "ssl_unknown_authority", obs.error
    assert obs.addresses == ()
    # The handshake failed, so the query never reached the server.
    assert dns_server.queries["site.test"] == 0


@pytest.fixture
async def shared(ca_bundle: str) -> AsyncIterator[httpx.AsyncClient]:
    """One DoH client for several queries, as a sweep's DoHCache holds."""
    async with doh_client(context(ca_bundle)) as client:
        yield client


def _script_failures(doh: DoHServer) -> None:
    """Names whose DoH answers are each one way of not being a DNS answer."""
    doh.set("site.test", Answer(GENUINE))
    doh.set("blocked.test", NXDomain())
    doh.set("void.test", Silent())
    doh.reply("missing.test", HTTPReply(404, "text/plain", b"404: Not Found"))
    doh.reply("page.test", HTTPReply(200, "text/html", b"<html>blocked</html>"))
    doh.reply("garbage.test", HTTPReply(200, "application/dns-message", b"\x00\x01garbage"))
    doh.reply("huge.test", HTTPReply(200, "application/dns-message", bytes(70_000)))


# (name, failure, rcode, addresses): what the primitive answered before it went through httpx.
DOH_CASES = [
    ("site.test", None, "NOERROR", (GENUINE,)),
    ("blocked.test", "dns_nxdomain_error", "NXDOMAIN", ()),
    ("missing.test", "unknown_failure", None, ()),
    ("page.test", "unknown_failure", None, ()),
    ("garbage.test", "unknown_failure", None, ()),
    ("huge.test", "unknown_failure", None, ()),  # longer than any DNS message: not read on
    ("void.test", "generic_timeout_error", None, ()),
]


@pytest.mark.parametrize("via", ["one-off", "shared"])
@pytest.mark.parametrize(("name", "failure", "rcode", "addresses"), DOH_CASES)
async def test_doh_observation_is_the_same_over_a_shared_client(
    doh_server: DoHServer,
    shared: httpx.AsyncClient,
    ca_bundle: str,
    via: str,
    name: str,
    failure: str | None,
    rcode: str | None,
    addresses: tuple[str, ...],
) -> None:
    _script_failures(doh_server)
    client = shared if via == "shared" else None
    obs = await query_doh(name, doh_server.url, timeout=0.5, verify=ca_bundle, client=client)
    assert (obs.failure, obs.rcode, obs.addresses) == (failure, rcode, addresses), obs.error
    assert obs.transport == "doh" and obs.resolver == doh_server.url
    assert len(obs.responses) == (0 if rcode is None else 1)
    assert doh_server.script.queries[name] == 1
    if failure == "unknown_failure":
        assert obs.error  # what the answer was instead, kept beside the failure


@pytest.mark.parametrize("via", ["one-off", "shared"])
async def test_doh_refused_connection(shared: httpx.AsyncClient, ca_bundle: str, via: str) -> None:
    # httpx keeps the socket's error as the cause, so the refusal has its name (dnspython's
    # own DoH stack dropped it, and this read unknown_failure).
    url = f"https://127.0.0.1:{unbound_port(socket.SOCK_STREAM)}/dns-query"
    client = shared if via == "shared" else None
    obs = await query_doh("site.test", url, timeout=2, verify=ca_bundle, client=client)
    assert obs.failure == "connection_refused", obs.error
    assert obs.rcode is None and obs.responses == ()


async def test_doh_wrong_media_type_is_not_read_as_dns(
    doh_server: DoHServer, shared: httpx.AsyncClient
) -> None:
    """A DNS body under another media type than RFC 8484's is not read as a DoH answer."""
    query = dns.message.make_query("site.test", "A")
    body = dns.message.make_response(query).to_wire()
    doh_server.reply("typed.test", HTTPReply(200, "text/plain", body))
    obs = await query_doh("typed.test", doh_server.url, client=shared)
    assert obs.failure == "unknown_failure" and obs.error is not None
    assert "content type" in obs.error


async def test_doh_shared_client_keeps_one_connection_through_bad_answers(
    doh_server: DoHServer, shared: httpx.AsyncClient
) -> None:
    """Error pages and garbage are read to the end, so the next name reuses the connection."""
    _script_failures(doh_server)
    names = ["site.test", "missing.test", "page.test", "garbage.test", "blocked.test"]
    for name in [*names, "site.test"]:
        await query_doh(name, doh_server.url, timeout=2, client=shared)
    assert doh_server.handshakes == 1
    # A timed-out exchange cannot be resumed: its connection goes, the next one is new.
    await query_doh("void.test", doh_server.url, timeout=0.3, client=shared)
    obs = await query_doh("site.test", doh_server.url, timeout=2, client=shared)
    assert obs.addresses == (GENUINE,)
    assert doh_server.handshakes == 2


async def test_doh_bootstrap_address_is_for_the_one_off_client(
    doh_server: DoHServer, shared: httpx.AsyncClient
) -> None:
    with pytest.raises(ValueError):
        await query_doh("site.test", doh_server.url, client=shared, bootstrap_address="127.0.0.1")


async def test_udp_resends_a_lost_query(dns_server: ScriptedDNSServer) -> None:
    """The first datagram is lost: the query is sent again within the timeout, as stubs do."""
    dns_server.set("lossy.test", LoseFirst(1, Answer("192.0.2.7")))
    obs = await query_udp("lossy.test", dns_server.address, timeout=2.0, retransmit=0.3)
    assert obs.failure is None and obs.addresses == ("192.0.2.7",)
    assert dns_server.queries["lossy.test"] == 2
    assert 300 <= obs.duration_ms < 1500


async def test_answers_to_two_sends_are_not_injection(dns_server: ScriptedDNSServer) -> None:
    """A slow resolver answers both the query and its resend: one ID each, so one response."""
    dns_server.set("slow.test", Delay(0.5, Answer("192.0.2.8")))
    obs = await query_udp("slow.test", dns_server.address, timeout=3.0, retransmit=0.3, window=0.6)
    assert obs.failure is None and dns_server.queries["slow.test"] >= 2
    assert len(obs.responses) == 1
