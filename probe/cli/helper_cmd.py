"""``probe helper serve``: run the control helper on an uncensored network."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from measurements import trust
from measurements.addresses import parse_networks
from probe.cli.errors import UsageError
from probe.config import BY_DOTTED, ConfigError
from probe.servers.helper import HelperSettings, serve


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
    sp.set_defaults(handler=serve_helper)


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen: expected ADDR:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


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
    settings = HelperSettings(args.resolver, args.ca_bundle, routable, args.timeout)

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(serve(host, port, settings, ready))
        await asyncio.wait([task, asyncio.create_task(ready.wait())], timeout=10,
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if task.done():
            task.result()  # raises the bind error
        print(f"probe helper listening on http://{host}:{port}/v1/check", file=sys.stderr)
        await task

    try:
        asyncio.run(main())
    except OSError as exc:
        raise UsageError(f"--listen {args.listen}: {exc.strerror or exc}") from None
    return 0
