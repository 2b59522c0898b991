"""The lab's internet, run inside the ``pl-net`` namespace: ``python -m tests.lab.internet``.

One process serves, each on its own address (all on the namespace's loopback):

- the target sites (www.facebook.com, web.telegram.org, ...) over HTTP and HTTPS, with one
  certificate from the lab root naming every site; the same sites on a CDN edge address and
  on the Telegram data-centre address;
- the reference hosts (www.wikipedia.org, ...), from the same server;
- every name of the bundled target list (targets/default.toml) that the lab did not already
  serve, from the same site on addresses of their own (plan.BUNDLED_IPS) with a certificate
  of their own, and plain TCP on its endpoints' other ports;
- the public resolver (198.19.0.53, UDP and TCP) and a DNS-over-HTTPS endpoint
  (https://198.19.0.54/dns-query, its certificate naming the IP), both telling the truth;
- an ISP's blockpage server (where a censoring resolver sends people), whose certificate
  names only itself; under the name notice.isp.lab it serves a notice no fingerprint knows.

What the sites do for everyone comes from the internet policy file (a scenario's
``[server]``): a status per site (a 403, say), paths broken or slow on every site, and
redirects (a shortener's link, http to https), keyed by the URL asked for::

    status = { "www.instagram.com" = 403 }
    broken = { "/garbage" = "garbage", "/endless" = "endless-header", "/headers" = "many-headers" }
    slow = { "/slow" = 5.0 }    # seconds before the page's answer starts
    redirect = { "http://www.facebook.com/" = "https://www.facebook.com/" }   # a 301

A redirect's value may also be a table, ``{ location = URL, status = 302 }``.

A broken path answers bytes that are not well-formed HTTP, written raw to the connection
(the HTTP server never gets to answer), then closes: ``garbage`` is random bytes with CRLFs
in them (an illegal status line), ``endless-header`` a 200 status line and one header line
that never ends (``ENDLESS_SIZE`` bytes of it), ``many-headers`` a 200 with ``MANY_HEADERS``
header lines. Every other path of a site serves its page. A site that is down is an iptables
rule in this namespace, not a server change.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.lab import plan
from tests.lab.policy import PolicyFile
from tests.lab.state import Paths, load_ca, mark_ready
from tests.servers.dns_server import Answer, ScriptedDNSServer
from tests.servers.doh_server import DoHServer

BIG_SIZE = 4 * 1024 * 1024  # /big: for throughput checks
BIG_BODY = bytes(range(256)) * (BIG_SIZE // 256)
BLOCKPAGE_TITLE = "Access restricted"
# The Kazakh wording the probe's fingerprints know ("kz.authorities-decision").
BLOCKPAGE_TEXT = "Access to this resource has been blocked by decision of the authorities."
# A front page of a realistic size (tens of kB), so a short blockpage in its place differs in
# length as it would on the real sites (the probe compares lengths with the helper's page).
SITE_TEXT = "The genuine site. " + " ".join(f"Post {i}: nothing to see here." for i in range(1200))
NOTICE_TITLE = "Notice"
NOTICE_TEXT = "This resource is not available."  # in no fingerprint list
# Broken paths: a few MB at most, then the connection is closed.
GARBAGE = b"\r\n".join(random.Random(7).randbytes(200) for _ in range(40))
ENDLESS_SIZE = 4 << 20  # bytes of the header line that never ends
MANY_HEADERS = 100_000


def page(title: str, text: str) -> str:
    """A small HTML page."""
    return (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>{text}</p></body></html>\n"
    )


def raw_answer(kind: str) -> bytes:
    """The bytes a broken path answers."""
    if kind == "garbage":
        return GARBAGE
    if kind == "endless-header":
        return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Long: " + b"a" * ENDLESS_SIZE
    if kind == "many-headers":
        lines = b"".join(b"X-Header-%06d: v\r\n" % i for i in range(MANY_HEADERS))
        return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n" + lines + b"\r\n"
    raise ValueError(f"broken: {kind!r} is not garbage, endless-header or many-headers")


async def _write_raw(request: web.Request, kind: str) -> web.Response:
    """Write a broken answer straight to the connection, then close it.

    The transport buffers what the client has not read yet (a few MB at most) and closes
    once it is sent, or when the client goes. The response returned is never sent: writing
    it to the closed transport fails, which aiohttp takes as a client gone (no log, no 500).
    """
    transport = request.transport
    if transport is not None:
        transport.write(raw_answer(kind))
        transport.close()
    return web.Response()


def redirect(moved: str | dict[str, Any]) -> web.Response:
    """A redirect of the policy: a URL (answered with a 301), or ``{location, status}``."""
    if isinstance(moved, str):
        moved = {"location": moved}
    status = int(moved.get("status", 301))
    return web.Response(status=status, headers={"Location": str(moved["location"])})


def site_app(policy: PolicyFile) -> web.Application:
    """Every site: its page at every path (or the status the policy sets for everyone), /big,
    and the paths the policy breaks, slows or redirects."""

    async def index(request: web.Request) -> web.Response:
        host = (request.host or "").split(":")[0].lower()
        now = policy.current()
        moved = now.get("redirect", {}).get(f"{request.scheme}://{host}{request.path_qs}")
        if moved is not None:
            return redirect(moved)
        broken = now.get("broken", {}).get(request.path)
        if broken is not None:
            return await _write_raw(request, str(broken))
        delay = now.get("slow", {}).get(request.path)
        if delay is not None:
            await asyncio.sleep(float(delay))
        status = int(now.get("status", {}).get(host, 200))
        if status != 200:
            return web.Response(
                status=status, text=page(f"{status}", "Not for you."), content_type="text/html"
            )
        return web.Response(text=page(f"Welcome to {host}", SITE_TEXT), content_type="text/html")

    async def big(request: web.Request) -> web.Response:
        # A static file as a web server serves one: a Range asks for a slice (206), so a
        # throughput transfer gets exactly the bytes it reads and nothing is left in flight
        # (or in a throttle's queue) when it ends. The slice goes out in one write, as nginx
        # sends a file: the headers share the first 16 KiB TLS record with the body.
        try:
            asked = request.http_range
        except ValueError:  # a malformed Range is ignored, as servers do
            asked = slice(None)
        first, stop, _ = asked.indices(BIG_SIZE)
        if (asked.start is None and asked.stop is None) or first >= stop:
            return web.Response(body=BIG_BODY, content_type="application/octet-stream")
        return web.Response(
            status=206,
            body=BIG_BODY[first:stop],
            content_type="application/octet-stream",
            headers={"Content-Range": f"bytes {first}-{stop - 1}/{BIG_SIZE}"},
        )

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_get("/{tail:.*}", index)
    return app


def blockpage_app() -> web.Application:
    """The ISP's blockpage (a plain notice under its notice name), whatever path is asked."""

    async def any_path(request: web.Request) -> web.Response:
        if (request.host or "").split(":")[0].lower() == plan.NOTICE_NAME:
            return web.Response(text=page(NOTICE_TITLE, NOTICE_TEXT), content_type="text/html")
        return web.Response(text=page(BLOCKPAGE_TITLE, BLOCKPAGE_TEXT), content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", any_path)
    return app


async def _serve_app(
    app: web.Application, ips: tuple[str, ...], ctx: ssl.SSLContext, plain: tuple[int, ...] = ()
) -> None:
    """HTTP on 80 and HTTPS on 443 of every address, and HTTP on the ``plain`` ports too."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    for ip in ips:
        for port in (80, *plain):
            await web.TCPSite(runner, ip, port).start()
        await web.TCPSite(runner, ip, 443, ssl_context=ctx).start()


def _server_context(ca_leaf_names: tuple[str, ...], paths: Paths) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    load_ca(paths).issue_cert(*ca_leaf_names).configure_cert(ctx)
    return ctx


async def main(paths: Paths) -> None:
    """Start every server, say so, then serve until killed."""
    policy = PolicyFile(paths.net_policy)
    await _serve_app(site_app(policy), plan.WEB_IPS, _server_context(plan.SITE_NAMES, paths))
    # The bundled target list's sites, on their own addresses with their own certificate;
    # its endpoints' other ports (WhatsApp's 5222) accept connections as well.
    await _serve_app(
        site_app(policy),
        plan.BUNDLED_IPS,
        _server_context(plan.BUNDLED_NAMES, paths),
        plan.BUNDLED_PORTS,
    )
    await _serve_app(
        blockpage_app(), (plan.BLOCKPAGE_IP,), _server_context((plan.BLOCKPAGE_NAME,), paths)
    )
    truth = ScriptedDNSServer(host=plan.PUBLIC_DNS, port=53)
    for name, ip in plan.ZONE.items():
        truth.set(name, Answer(ip))
    await truth.start()
    doh = DoHServer(load_ca(paths), truth, hostnames=(plan.DOH_IP,), host=plan.DOH_IP, port=443)
    await doh.start()
    mark_ready(paths, "net")
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state", type=Path, default=Paths().root)
    asyncio.run(main(Paths(parser.parse_args().state)))
