"""``probe helper serve``: run the control helper on an uncensored network."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
from typing import Any

from measurements import trust
from measurements.addresses import parse_networks
from probe.cli.errors import UsageError
from probe.config import BY_DOTTED, ConfigError, read_token_file
from probe.helper.server import HelperSettings, serve


def register(sub: Any) -> None:
    """Add the command to the parser."""
    p = sub.add_parser("helper", help="the control helper (run it on an uncensored network)")
    hsub = p.add_subparsers(dest="helper_command", required=True)
    sp = hsub.add_parser("serve", help="answer probes' control checks over HTTP")
    sp.add_argument("--listen", default="127.0.0.1:8080", metavar="ADDR:PORT",
                    help="where to listen (default 127.0.0.1:8080)")  # fmt: skip
    sp.add_argument("--resolver", metavar="IP[:PORT]", help="DNS resolver (default: system's)")
    sp.add_argument("--ca-bundle", metavar="FILE", help="trust anchors (default: system's)")
    sp.add_argument("--routable", action="append", default=[], metavar="CIDR",
                    help="reserved ranges to treat as public (test labs only)")  # fmt: skip
    sp.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS")
    sp.add_argument("--token-file", metavar="FILE",
                    help="require the token on this file's first line from every probe "
                         "(the probe's control.helper_token_file)")  # fmt: skip
    sp.add_argument("--throughput-bytes-per-hour", type=int, default=1 << 30, metavar="BYTES",
                    help="bytes the helper may download for throughput tests per hour "
                         "(default 1 GiB; 0: none)")  # fmt: skip
    sp.add_argument("--read-timeout", type=float, default=5.0, metavar="SECONDS",
                    help="seconds a client has to send a request's headers, and again its "
                         "body; an idle kept-alive connection is closed after as long "
                         "(default 5)")  # fmt: skip
    sp.add_argument("--per-client-connections", type=int, default=32, metavar="N",
                    help="connections one client address may hold at once; more are "
                         "answered 429 and closed (default 32)")  # fmt: skip
    sp.set_defaults(handler=serve_helper)


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen: expected ADDR:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve_helper(args: argparse.Namespace) -> int:
    """Validate, then serve until interrupted."""
    host, port = _listen(args.listen)
    for dotted, value in (
        ("network.resolver", args.resolver),
        ("network.ca_bundle", args.ca_bundle),
    ):
        if value is not None:
            try:
                BY_DOTTED[dotted].parse(value)
            except ValueError as exc:
                raise ConfigError(f"--{dotted.split('.')[1].replace('_', '-')}: {exc}") from None
    try:
        routable = parse_networks(args.routable)
        trust.preload(args.ca_bundle)
    except ValueError as exc:
        raise UsageError(f"--routable: {exc}") from None
    token = None
    if args.token_file is not None:
        try:
            token = read_token_file(args.token_file)
        except ValueError as exc:
            raise UsageError(f"--token-file: {exc}") from None
    if args.throughput_bytes_per_hour < 0:
        raise UsageError("--throughput-bytes-per-hour: must be at least 0")
    if not args.read_timeout > 0:
        raise UsageError("--read-timeout: must be more than 0")
    if args.per_client_connections < 1:
        raise UsageError("--per-client-connections: must be at least 1")
    settings = HelperSettings(
        args.resolver, args.ca_bundle, routable, args.timeout, token=token,
        throughput_bytes_per_hour=args.throughput_bytes_per_hour,
        read_timeout=args.read_timeout, per_client_connections=args.per_client_connections,
    )  # fmt: skip

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(serve(host, port, settings, ready))
        await asyncio.wait([task, asyncio.create_task(ready.wait())], timeout=10,
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if task.done():
            task.result()  # raises the bind error
        print(f"probe helper listening on http://{host}:{port}/v1/check", file=sys.stderr)
        if token is None and not _loopback(host):
            print(
                "probe helper: no --token-file, so anyone who can reach this port may use the "
                "helper (and its throughput budget)",
                file=sys.stderr,
            )
        await task

    try:
        asyncio.run(main())
    except OSError as exc:
        raise UsageError(f"--listen {args.listen}: {exc.strerror or exc}") from None
    return 0
