"""``probe helper serve``: run the control helper on an uncensored network."""

from __future__ import annotations

import argparse
import ipaddress
import ssl
import sys
from typing import TYPE_CHECKING, Any

from measurements.addresses import split_host_port
from probe.cli.errors import UsageError
from probe.cli.options import add_setting_flags, setting_flags
from probe.config import HELPER_KEYS, ConfigError, load_helper_settings

if TYPE_CHECKING:
    from measurements.geoip import GeoIP


def register(sub: Any) -> None:
    """Add the command to the parser."""
    p = sub.add_parser("helper", help="the control helper (run it on an uncensored network)")
    hsub = p.add_subparsers(dest="helper_command", required=True)
    sp = hsub.add_parser(
        "serve",
        help="answer probes' control checks over HTTP",
        description="Settings come from flags, the config file's [helper] section, "
        "PROBE_HELPER_* variables and defaults, in that order.",
    )
    add_setting_flags(sp, keys=HELPER_KEYS)
    sp.set_defaults(handler=serve_helper)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _geoip(asn_db: str | None, country_db: str | None) -> GeoIP | None:
    """The whoami database(s), opened and checked before serving (a bad file: exit 2)."""
    from measurements.geoip import GeoIPError, open_geoip

    files = list(dict.fromkeys(f for f in (asn_db, country_db) if f))  # one combined file once
    try:
        return open_geoip(files) if files else None
    except GeoIPError as exc:
        key = "helper.asn_db" if asn_db and str(exc).startswith(asn_db) else "helper.country_db"
        raise ConfigError(f"{key}: {exc}") from None


def serve_helper(args: argparse.Namespace) -> int:
    """Validate, then serve until interrupted."""
    # Imported here: aiohttp (about 10 MB) is the helper's alone, and every other command,
    # the volunteer's long-running daemon most, would carry it otherwise.
    import asyncio

    from measurements import trust
    from probe.helper.server import HelperSettings, serve

    config = load_helper_settings(setting_flags(args), args.config).helper
    host, port = split_host_port(config.listen)
    host = host or "127.0.0.1"
    try:
        trust.preload(config.ca_bundle)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"helper.ca_bundle: {config.ca_bundle}: not a usable PEM bundle ({exc})"
        ) from None
    replay = split_host_port(config.replay_listen) if config.replay_listen else None
    settings = HelperSettings(
        config.resolver, config.ca_bundle, config.routable, config.timeout,
        concurrency=config.concurrency, token=config.token,
        throughput_bytes_per_hour=config.throughput_bytes_per_hour,
        read_timeout=config.read_timeout, per_client_connections=config.per_client_connections,
        replay_listen=(replay[0] or host, replay[1]) if replay else None,
        replay_public_port=config.replay_public_port,
        geoip=_geoip(config.asn_db, config.country_db),
    )  # fmt: skip

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(serve(host, port, settings, ready))
        await asyncio.wait([task, asyncio.create_task(ready.wait())], timeout=10,
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if task.done():
            task.result()  # raises the bind error
        shown = f"[{host}]" if ":" in host else host
        print(f"probe helper listening on http://{shown}:{port}/v1/check", file=sys.stderr)
        if settings.replay_listen is not None:
            print(f"probe helper SNI replay on TLS {config.replay_listen}", file=sys.stderr)
        if settings.geoip is not None:
            files = ", ".join(settings.geoip.files)
            print(f"probe helper whoami from {files} (no address kept)", file=sys.stderr)
        if config.token is None and not _loopback(host):
            print(
                "probe helper: no token file (helper.token_file, --token-file), so anyone who "
                "can reach this port may use the helper (and its throughput budget)",
                file=sys.stderr,
            )
        await task

    try:
        asyncio.run(main())
    except OSError as exc:
        raise UsageError(f"--listen {config.listen}: {exc.strerror or exc}") from None
    return 0
