"""DNS-over-HTTPS: an RFC 8484 exchange, making measurements.dns's observations.

A one-off query goes through httpx (the client stack HTTP measurement used, measurements.trust
the TLS contexts); a sweep's queries go over its keep-alive connections
(measurements.keepalive), so a sweep does not pay one TLS handshake per name, nor httpx's
CPU per query. dnspython only builds and parses the messages.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time

import dns.exception
import dns.message
import httpx

from measurements.dns import failed, observed
from measurements.keepalive import DoHConnections
from measurements.observations import DNSObservation
from measurements.pinned import PinnedTransport
from measurements.trust import context_async

# RFC 8484's media type, both ways.
_DOH_TYPE = "application/dns-message"
# RFC 1035's two-byte length field: a longer DoH body cannot be one DNS message.
_MAX_DNS_MESSAGE = 65535
# httpx's default pool, but idle DoH connections are kept a minute rather than 5 s: a sweep's
# names trickle in as inputs start, and each new connection is a handshake. A connection the
# server closed meanwhile is not reused.
_DOH_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=60)


def doh_client(context: ssl.SSLContext, *, pin: tuple[str, str] | None = None) -> httpx.AsyncClient:
    """An HTTP/1.1 keep-alive client for DoH; ``pin`` = (host, ip) sends that host's TCP to ip.

    TLS checks the certificate against the URL's host either way (measurements.pinned). Without
    a pin, a URL naming a host is resolved by the system (getaddrinfo, in a thread).
    """
    # trust_env off: a proxy or netrc from the environment would move or alter the control.
    if pin is not None:
        host, ip = pin
        return httpx.AsyncClient(transport=PinnedTransport(host, ip, context), trust_env=False)
    return httpx.AsyncClient(verify=context, trust_env=False, limits=_DOH_LIMITS)


class DoHAnswerError(Exception):
    """An HTTP answer that is not a DNS response to the query (status, type, size or ID)."""


async def _read_bounded(response: httpx.Response) -> bytes:
    """The body as sent, refusing more than a DNS message can hold."""
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > _MAX_DNS_MESSAGE:
            raise DoHAnswerError(f"answer longer than {_MAX_DNS_MESSAGE} bytes")
    return bytes(body)


def _answer(
    status: int, headers: httpx.Headers, body: bytes, query: dns.message.Message
) -> dns.message.Message:
    """The DNS message of an HTTP answer, or why it is not the answer to ``query``."""
    if not 200 <= status < 300:
        raise DoHAnswerError(f"HTTP status {status}")
    kind = headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != _DOH_TYPE:
        raise DoHAnswerError(f"content type {kind or 'missing'!r}, not {_DOH_TYPE}")
    message = dns.message.from_wire(body)
    if not query.is_response(message):
        raise DoHAnswerError("the answer is to another query")
    return message


async def _exchange(
    client: httpx.AsyncClient | DoHConnections,
    url: str,
    query: dns.message.Message,
    post: bool,
    timeout: float,  # noqa: ASYNC109 - see the module docstring
) -> dns.message.Message:
    """One RFC 8484 exchange: the query out (POST body or GET ?dns=), a DNS message back."""
    wire = query.to_wire()
    # Identity: a DNS message is small, and a compressed body could inflate past any bound.
    headers = {"accept": _DOH_TYPE, "accept-encoding": "identity"}
    if isinstance(client, DoHConnections):  # a sweep's shared connections: POST only
        headers["content-type"] = _DOH_TYPE
        status, answer_headers, body = await client.post(url, headers, wire, _MAX_DNS_MESSAGE)
        if len(body) > _MAX_DNS_MESSAGE:
            raise DoHAnswerError(f"answer longer than {_MAX_DNS_MESSAGE} bytes")
        return _answer(status, answer_headers, body, query)
    if post:
        headers["content-type"] = _DOH_TYPE
        request = client.build_request("POST", url, content=wire, headers=headers, timeout=timeout)
    else:
        encoded = base64.urlsafe_b64encode(wire).rstrip(b"=").decode("ascii")  # RFC 8484 4.1
        request = client.build_request(
            "GET", url, params={"dns": encoded}, headers=headers, timeout=timeout
        )
    response = await client.send(request, stream=True)
    try:
        # The body is read whatever the status, so a small error page leaves the connection
        # reusable for the next name.
        body = await _read_bounded(response)
    finally:
        await response.aclose()
    return _answer(response.status_code, response.headers, body, query)


async def query_doh(
    hostname: str,
    url: str,
    *,
    qtype: str = "A",
    timeout: float = 5.0,  # noqa: ASYNC109 - see the module docstring
    verify: bool | str = True,
    bootstrap_address: str | None = None,
    post: bool = True,
    client: httpx.AsyncClient | DoHConnections | None = None,
) -> DNSObservation:
    """Resolve over DNS-over-HTTPS (RFC 8484): a POST (or GET) through ``client`` when given.

    A given client (see doh_client, or a sweep's DoHConnections, which always POSTs) brings
    its own trust and routing and stays open, so a sweep sharing one pays a TLS handshake per
    connection to a DoH server rather than per name. Without one,
    a one-off client is built from ``verify`` (a CA bundle path or a bool) and
    ``bootstrap_address`` (TCP goes there while TLS checks the URL's host), and closed after.
    """
    if client is not None and bootstrap_address is not None:
        raise ValueError("bootstrap_address is for the one-off client; pin the given client")
    query = dns.message.make_query(hostname, qtype)
    own: httpx.AsyncClient | None = None
    if client is None:
        # A cached context: loading a CA bundle is blocking I/O, kept off the loop.
        context = await context_async(
            verify if isinstance(verify, str) else None, verify=verify is not False
        )
        pin = (httpx.URL(url).host, bootstrap_address) if bootstrap_address else None
        own = client = doh_client(context, pin=pin)
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            response = await _exchange(client, url, query, post, timeout)
        return observed(hostname, qtype, "doh", url, start, [(time.monotonic(), response)])
    except (httpx.HTTPError, OSError, dns.exception.DNSException, DoHAnswerError) as exc:
        # OSError covers TimeoutError (the overall bound) and ssl errors; all are data here.
        return failed(hostname, qtype, "doh", url, start, exc)
    finally:
        if own is not None:
            await own.aclose()
