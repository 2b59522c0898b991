"""measurements.http against a real local web server on 127.0.0.1 (made-up names pinned there).

The ``web_server`` and ``rogue_web_server`` fixtures come from tests/servers/http_server.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from urllib.parse import quote

import pytest

from measurements.addresses import address_problem, parse_networks
from measurements.http import DEFAULT_USER_AGENT, fetch
from measurements.observations import HTTPHop
from measurements.trust import preload
from tests.servers.broken_http import BrokenHTTP, CloseAfterRequest
from tests.servers.http_server import (
    BIG_BODY,
    BIG_SIZE,
    BLOCKPAGE_TEXT,
    RESET_SENT,
    WebServer,
)

LOCAL = "127.0.0.1"
NAME = "www.example.test"
OTHER = "other.example.test"


def _assert_ordered(hop: HTTPHop) -> None:
    t = hop.timings
    assert t.connect_ms is not None and t.first_byte_ms is not None and t.total_ms is not None
    assert 0 <= t.connect_ms <= t.first_byte_ms <= t.total_ms


async def test_page_over_https_pinned_with_name_as_host_and_sni(
    web_server: WebServer, ca_bundle: str
) -> None:
    url = web_server.url("/", host=NAME)
    observation = await fetch(url, LOCAL, ca_bundle=ca_bundle, timeout=5)
    assert len(observation.hops) == 1
    hop = observation.final
    assert hop.failure is None and hop.operation is None and hop.refused is None
    assert hop.url == url and hop.ip == LOCAL
    assert hop.status == 200
    assert hop.title == f"Welcome to {NAME}"
    assert hop.body_length == len(hop.body_head) > 0
    assert hop.body_sha256 == hashlib.sha256(hop.body_head).hexdigest()
    assert hop.truncated is False
    assert ("content-type", "text/html; charset=utf-8") in hop.headers
    assert hop.tls_version is not None and hop.tls_version.startswith("TLSv1.")
    assert hop.certificate is not None and NAME in hop.certificate.sans
    assert hop.timings.tls_ms is not None and hop.timings.tls_ms > 0
    _assert_ordered(hop)
    assert observation.duration_ms >= hop.timings.total_ms  # type: ignore[operator]
    # The server was reached on 127.0.0.1 but saw the made-up name, in SNI and in Host.
    assert web_server.server_names == [NAME]
    assert web_server.hosts_seen("/") == [f"{NAME}:{web_server.https_port}"]


async def test_plain_http(web_server: WebServer) -> None:
    observation = await fetch(web_server.url("/", host=OTHER, https=False), LOCAL, timeout=5)
    hop = observation.final
    assert hop.failure is None and hop.status == 200
    assert hop.title == f"Welcome to {OTHER}"
    assert hop.tls_version is None and hop.certificate is None and hop.timings.tls_ms is None
    _assert_ordered(hop)
    assert web_server.hosts_seen("/") == [f"{OTHER}:{web_server.http_port}"]


async def test_blockpage_status_and_missing_title(web_server: WebServer, ca_bundle: str) -> None:
    block = (await fetch(web_server.url("/blockpage"), LOCAL, ca_bundle=ca_bundle)).final
    assert block.status == 200 and block.title == "Access restricted"
    assert BLOCKPAGE_TEXT.encode() in block.body_head
    missing = (await fetch(web_server.url("/status/451"), LOCAL, ca_bundle=ca_bundle)).final
    assert missing.failure is None and missing.status == 451 and missing.location is None
    untitled = (await fetch(web_server.url("/notitle"), LOCAL, ca_bundle=ca_bundle)).final
    assert untitled.status == 200 and untitled.title is None and untitled.body_length


async def test_redirect_chain_hop_by_hop(web_server: WebServer, ca_bundle: str) -> None:
    final = web_server.url("/", host=OTHER)
    second = "/redirect?to=" + quote(final, safe="")
    url = web_server.url("/redirect?to=" + quote(second, safe=""), host=NAME)
    asked: list[str] = []

    async def resolve(host: str) -> str | None:
        asked.append(host)
        return LOCAL if host == OTHER else None

    observation = await fetch(url, LOCAL, ca_bundle=ca_bundle, resolve=resolve, timeout=5)
    hops = observation.hops
    assert [h.status for h in hops] == [302, 302, 200]
    # A relative Location is recorded absolute, on the same host (reusing its address).
    assert hops[0].location == web_server.url(second, host=NAME)
    assert hops[1].url == hops[0].location
    assert hops[1].location == final and hops[2].url == final
    assert hops[2].title == f"Welcome to {OTHER}"
    assert all(h.ip == LOCAL and h.failure is None for h in hops)
    assert asked == [OTHER]  # only the new host was resolved, once
    port = web_server.https_port
    assert web_server.hosts_seen() == [f"{NAME}:{port}", f"{NAME}:{port}", f"{OTHER}:{port}"]


async def test_redirect_to_unresolvable_host_is_not_followed(
    web_server: WebServer, ca_bundle: str
) -> None:
    target = "https://nowhere.example.test/"
    url = web_server.url("/redirect?to=" + quote(target, safe=""))

    async def resolve(host: str) -> str | None:
        return None

    observation = await fetch(url, LOCAL, ca_bundle=ca_bundle, resolve=resolve)
    first, last = observation.hops
    assert first.status == 302 and first.location == target
    assert last.url == target and last.ip is None
    assert last.refused == "no address for nowhere.example.test"
    assert last.status is None and last.failure is None


async def test_redirect_to_a_port_out_of_range_is_recorded_not_raised(
    web_server: WebServer, ca_bundle: str
) -> None:
    target = f"http://{LOCAL}:99999/"
    url = web_server.url("/redirect?to=" + quote(target, safe=""))
    observation = await fetch(url, LOCAL, ca_bundle=ca_bundle)
    first, last = observation.hops
    assert first.status == 302 and last.url == target
    assert last.refused == "port 99999 out of range" and last.failure is None


async def test_redirect_to_refused_address_is_recorded_not_contacted(
    web_server: WebServer, ca_bundle: str
) -> None:
    # The policy of the probe, with the test server's address declared routable: ::1 stays
    # loopback, so the redirect there must be refused before any packet is sent.
    routable = parse_networks(["127.0.0.1/32"])
    checked: list[str] = []

    def allow_address(ip: str) -> str | None:
        checked.append(ip)
        return address_problem(ip, routable)

    async def resolve(host: str) -> str | None:
        return "::1"

    target = web_server.url("/", host="intranet.example.test")
    url = web_server.url("/redirect?to=" + quote(target, safe=""))
    observation = await fetch(
        url, LOCAL, ca_bundle=ca_bundle, resolve=resolve, allow_address=allow_address
    )
    first, last = observation.hops
    assert first.status == 302 and first.failure is None
    assert last.url == target and last.ip == "::1" and last.refused == "loopback"
    # Not contacted: nothing connected (the server does not even listen on ::1).
    assert last.failure is None and last.status is None and last.timings.connect_ms is None
    assert checked == [LOCAL, "::1"]
    assert web_server.hosts_seen("/") == []


@pytest.mark.parametrize(
    ("host", "ip", "refused"),
    [
        ("0x7f.2", "127.0.0.2", "loopback"),
        ("2130706434", "127.0.0.2", "loopback"),
        ("127.2", "127.0.0.2", "loopback"),
        ("0x7f.0.0.02", "127.0.0.2", "loopback"),
        # 127.0.0.2 to glibc, 177.0.0.2 to a decimal reader: refused, kept as written
        ("0177.0.2", "0177.0.2", "loopback (read as octal)"),
    ],
)
async def test_redirect_to_a_legacy_ipv4_spelling_is_judged_as_that_address(
    web_server: WebServer, ca_bundle: str, host: str, ip: str, refused: str
) -> None:
    # Every connector reads these as 127.0.0.2: the rule must see loopback, never a name to
    # resolve (a resolver under test could answer anything for it). Only the test server's
    # own address is routable, as in the test above.
    routable = parse_networks(["127.0.0.1/32"])
    asked: list[str] = []

    async def resolve(name: str) -> str | None:
        asked.append(name)
        return None

    target = f"http://{host}:{web_server.http_port}/"
    url = web_server.url("/redirect?to=" + quote(target, safe=""))
    observation = await fetch(
        url,
        LOCAL,
        ca_bundle=ca_bundle,
        resolve=resolve,
        allow_address=lambda ip: address_problem(ip, routable),
    )
    last = observation.final
    assert last.url == target and last.ip == ip and last.refused == refused
    assert asked == [] and web_server.hosts_seen("/") == []


async def test_redirect_to_a_legacy_spelling_of_a_routable_address_is_followed_there(
    web_server: WebServer, ca_bundle: str
) -> None:
    routable = parse_networks(["127.0.0.0/8"])
    target = f"http://0x7f000001:{web_server.http_port}/"
    url = web_server.url("/redirect?to=" + quote(target, safe=""))
    observation = await fetch(
        url,
        LOCAL,
        ca_bundle=ca_bundle,
        allow_address=lambda ip: address_problem(ip, routable),
    )
    last = observation.final
    assert last.ip == "127.0.0.1" and last.status == 200 and last.refused is None
    assert web_server.hosts_seen("/") == [f"0x7f000001:{web_server.http_port}"]


async def test_redirects_are_bounded(web_server: WebServer, ca_bundle: str) -> None:
    inner = "/redirect?to=" + quote("/", safe="")
    url = web_server.url("/redirect?to=" + quote(inner, safe=""))
    observation = await fetch(url, LOCAL, ca_bundle=ca_bundle, max_redirects=1)
    assert [h.status for h in observation.hops] == [302, 302]
    assert observation.final.location is not None and observation.final.failure is None
    assert len(web_server.requests) == 2


async def test_read_cap(web_server: WebServer, ca_bundle: str) -> None:
    cap = 100_000
    capped = (await fetch(web_server.url("/big"), LOCAL, ca_bundle=ca_bundle, max_bytes=cap)).final
    assert capped.failure is None and capped.status == 200
    assert capped.truncated is True and capped.body_length == cap
    assert capped.body_sha256 == hashlib.sha256(BIG_BODY[:cap]).hexdigest()
    assert capped.body_head == BIG_BODY[:8192]
    whole = (
        await fetch(web_server.url("/big"), LOCAL, ca_bundle=ca_bundle, max_bytes=4 * BIG_SIZE)
    ).final
    assert whole.truncated is False and whole.body_length == BIG_SIZE
    assert whole.body_sha256 == hashlib.sha256(BIG_BODY).hexdigest()
    exact = (
        await fetch(web_server.url("/big"), LOCAL, ca_bundle=ca_bundle, max_bytes=BIG_SIZE)
    ).final
    assert exact.truncated is False and exact.body_length == BIG_SIZE


@pytest.mark.parametrize("https", [True, False])
async def test_reset_mid_body(web_server: WebServer, ca_bundle: str, https: bool) -> None:
    url = web_server.url("/reset", https=https)
    hop = (await fetch(url, LOCAL, ca_bundle=ca_bundle, timeout=5)).final
    assert hop.failure == "connection_reset"
    assert hop.operation == "http_body"
    assert hop.status == 200  # the headers came; the body broke off
    assert hop.body_length is not None and hop.body_length <= RESET_SENT


async def test_slow_body_times_out(web_server: WebServer, ca_bundle: str) -> None:
    url = web_server.url("/slow?seconds=10")
    hop = (await fetch(url, LOCAL, ca_bundle=ca_bundle, timeout=1.0)).final
    assert hop.failure == "generic_timeout_error"
    assert hop.operation == "http_body"
    assert hop.status == 200 and hop.body_length is not None and hop.body_length > 0
    assert hop.timings.total_ms is not None and 900 <= hop.timings.total_ms < 5000


async def test_untrusted_certificate(rogue_web_server: WebServer, ca_bundle: str) -> None:
    hop = (await fetch(rogue_web_server.url("/"), LOCAL, ca_bundle=ca_bundle, timeout=5)).final
    assert hop.failure == "ssl_unknown_authority"
    assert hop.operation == "tls_handshake"
    assert hop.status is None and hop.timings.connect_ms is not None
    assert rogue_web_server.requests == []


async def test_unverified_control_reaches_rogue_certificate(rogue_web_server: WebServer) -> None:
    hop = (await fetch(rogue_web_server.url("/"), LOCAL, verify=False, timeout=5)).final
    assert hop.failure is None and hop.status == 200
    assert hop.certificate is not None
    assert "Information Security Certification Authority" in hop.certificate.issuer


async def test_name_not_in_certificate(web_server: WebServer, ca_bundle: str) -> None:
    url = web_server.url("/", host="unlisted.example.test")
    hop = (await fetch(url, LOCAL, ca_bundle=ca_bundle, timeout=5)).final
    assert hop.failure == "ssl_invalid_hostname" and hop.operation == "tls_handshake"


async def test_closed_port_is_refused(ca_bundle: str) -> None:
    with socket.socket() as sock:
        sock.bind((LOCAL, 0))
        port = sock.getsockname()[1]
    hop = (await fetch(f"https://{NAME}:{port}/", LOCAL, ca_bundle=ca_bundle, timeout=5)).final
    assert hop.failure == "connection_refused"
    assert hop.operation == "connect"
    assert hop.status is None and hop.timings.connect_ms is None


async def test_no_name_is_ever_looked_up(
    web_server: WebServer, ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tripwire, not a fake: any system lookup (which would leave this machine) fails the test.
    lookups: list[object] = []

    def tripwire(*args: object, **kwargs: object) -> None:
        lookups.append(args)
        raise AssertionError("name lookup attempted")

    monkeypatch.setattr(socket, "getaddrinfo", tripwire)
    preload(ca_bundle)
    observation = await fetch(web_server.url("/"), LOCAL, ca_bundle=ca_bundle, timeout=5)
    assert observation.final.status == 200
    assert lookups == []


@pytest.mark.parametrize(
    ("path", "malformed"),
    [
        ("/garbage", True),  # bytes that are no status line, then a close
        ("/endless", True),  # a header line that never ends
        ("/headers", True),  # 100,000 headers
        ("/", False),
    ],
)
async def test_an_answer_that_is_not_http_is_malformed_not_a_cut(
    path: str, malformed: bool
) -> None:
    async with BrokenHTTP() as server:
        obs = await fetch(f"http://broken.test:{server.port}{path}", LOCAL, timeout=10)
    hop = obs.final
    assert hop.malformed is malformed, hop.error
    # A parse error is no failure of the closed set (unknown_failure), and bytes that ended in
    # a close read as one (eof_error): either way the flag, not the string, says "malformed".
    assert hop.failure in (("unknown_failure", "eof_error") if malformed else (None,))


@pytest.mark.parametrize(
    ("answer", "malformed"),
    [(b"", False), (b"\x15\x03\x01\x00\x02\x02\x46", True)],  # nothing; a TLS alert
)
async def test_a_close_after_the_request_is_a_cut_unless_bytes_came_first(
    answer: bytes, malformed: bool
) -> None:
    # Both read as "Server disconnected without sending a response"; only a peer that sent
    # something (here a TLS alert, as a TLS-only port answers plain HTTP) was not cut off.
    async with CloseAfterRequest(answer) as server:
        obs = await fetch(f"http://cut.test:{server.port}/", LOCAL, timeout=10)
    hop = obs.final
    assert (hop.operation, hop.malformed) == ("http_request", malformed)
    if not malformed:
        assert hop.failure == "eof_error"


async def test_the_request_is_the_one_httpx_sent_byte_for_byte() -> None:
    """The page exchange (measurements.http1) sends what the httpx client sent: its Host and
    Connection first, then the browser's headers, in that order, and the Range asked for."""
    received: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, LOCAL, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"http://Www.Example.Test:{port}/a%20b?q=%C3%A9&r=s t"
        obs = await fetch(url, LOCAL, max_bytes=100, ranged=True)
    finally:
        server.close()
    assert obs.final.status == 200 and obs.final.body_head == b"ok"
    assert received == [
        f"GET /a%20b?q=%C3%A9&r=s%20t HTTP/1.1\r\nHost: www.example.test:{port}\r\n".encode()
        + b"Connection: keep-alive\r\nUser-Agent: "
        + DEFAULT_USER_AGENT.encode()
        + b"\r\n"
        b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
        b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: identity\r\n"
        b"Range: bytes=0-99\r\n\r\n"
    ]
