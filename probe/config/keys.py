"""Every setting's key: its TOML place, flag, environment variable, parser, default and help.

The probe's keys derive the environment variable from the flag (``--ca-bundle`` ->
``PROBE_CA_BUNDLE``); the helper's (``[helper]``, read by ``probe helper serve``) from the
name (``PROBE_HELPER_LISTEN``). List values in the environment are comma-separated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Any

from probe.config import sections
from probe.config.daemon_values import parse_duration, parse_groups, parse_share
from probe.config.values import (
    _bool,
    _cidr,
    _country,
    _file,
    _geoip_files,
    _int,
    _list,
    _listen,
    _metered,
    _port,
    _positive_int,
    _positive_seconds,
    _resolver,
    _sample_interval,
    _seconds,
    _share,
    _str,
    _token_file,
    _trials,
    _url,
    parse_retention,
)

APP = "blocking-probe"

# Public DoH resolvers used only as controls; the sweep reaches them only after the vantage
# check has shown the reference hosts answer.
DEFAULT_DOH = list(sections.DEFAULT_DOH)


@dataclass(frozen=True, slots=True)
class Key:
    """One setting: its TOML place, its parser, its default and its help."""

    section: str
    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    flag_name: str | None = None
    env_name: str | None = None

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.name.replace("_", "-"))

    @property
    def env(self) -> str:
        return self.env_name or "PROBE_" + self.flag[2:].replace("-", "_").upper()

    @property
    def is_list(self) -> bool:
        return isinstance(self.default, list)


KEYS: tuple[Key, ...] = (
    Key("vantage", "name", _str, None, "a name for this vantage point", "vantage-name"),
    Key("vantage", "network_type", _str, None, "home, mobile, datacenter, ..."),
    Key("vantage", "asn", _positive_int, None, "the network's AS number, if you want it recorded"),
    Key("vantage", "country", _country, None, "two-letter country code"),
    # Declared asn/country win; else the helper's whoami, then these files (probe.engine.location)
    Key("vantage", "geoip_db", _geoip_files, [], ".mmdb file(s) placing the vantage's own address"),
    Key(
        "vantage",
        "consent",
        _bool,
        False,
        "the operator accepts what a sweep does, for unattended machines (probe consent)",
        env_name="PROBE_VANTAGE_CONSENT",
    ),
    Key("network", "resolver", _resolver, None, "DNS resolver under test (default: the system's)"),
    Key("network", "ca_bundle", _file, None, "PEM trust anchors (default: the system's)"),
    Key("network", "routable", _list(_cidr), [], "reserved ranges to treat as public (labs)"),
    Key("network", "metered", _metered, "auto", "no timed tests if metered: auto, true, false"),
    Key("control", "doh", _list(_url(("https",))), DEFAULT_DOH, "DNS-over-HTTPS control URLs"),
    Key(
        "control",
        "helper",
        _url(("https", "http")),
        None,
        "control helper URL (probe helper serve)",
    ),
    Key(
        "control",
        "helper_token_file",
        _token_file,
        None,
        "file whose first line is the helper's token (its --token-file)",
    ),
    Key("control", "reference", _list(_url(("https", "http"))), [], "reference URLs"),
    Key("control", "innocuous_name", _str, "www.example.com", "SNI/Host for same-address controls"),
    Key("storage", "db", _str, None, "database path or SQLAlchemy URL (default: user data dir)"),
    Key(
        "storage",
        "retention",
        parse_retention,
        "30d",
        "keep evidence this long (30d, 36h, 2w; never: keep all); verdicts are always kept",
    ),
    Key(
        "storage",
        "retention_accessible",
        parse_retention,
        "7d",
        "keep the evidence of accessible verdicts this long if sooner (never: as the rest)",
    ),
    Key("limits", "concurrency", _positive_int, 128, "inputs measured at once"),
    Key("limits", "per_host", _positive_int, 2, "measurements in flight per host"),
    Key("limits", "target_timeout", _seconds, 60.0, "deadline per input, seconds"),
    Key("limits", "sweep_timeout", _seconds, 1800.0, "deadline for the whole sweep, seconds"),
    Key("limits", "retries", _int, 1, "extra attempts before a failure counts"),
    Key("limits", "retry_delay", _seconds, 1.0, "pause before each retry, seconds"),
    Key("limits", "dns_timeout", _seconds, 5.0, "per DNS query, seconds"),
    Key("limits", "connect_timeout", _seconds, 5.0, "per TCP connect or TLS handshake, seconds"),
    Key("limits", "http_timeout", _seconds, 10.0, "per HTTP request, seconds"),
    Key("limits", "max_body", _positive_int, 1 << 20, "bytes read per response at most"),
    # Rule 7's throughput tests. Conservative budgets: a volunteer's metered line must not pay
    # for our curiosity. A test is every trial of one input, controls included.
    Key("throughput", "enabled", _bool, True, "time services' throughput_url", "throughput"),
    Key("throughput", "max_bytes_per_test", _positive_int, 1 << 20, "bytes per throughput test"),
    Key("throughput", "max_seconds_per_test", _positive_seconds, 30.0, "seconds per test"),
    Key("throughput", "max_bytes_per_sweep", _positive_int, 10 << 20, "throughput bytes per sweep"),
    Key("throughput", "max_bytes_per_day", _positive_int, 50 << 20, "throughput bytes per 24 h"),
    Key("throughput", "max_link_share", _share, 0.5, "share of time timed transfers hold the line"),
    Key("throughput", "trials", _trials, 3, "trials of each kind per test", "throughput-trials"),
    Key("throughput", "sample_interval", _sample_interval, 0.1, "seconds between rate samples"),
    Key(
        "throughput",
        "replay",
        _bool,
        True,
        "time each HTTPS name's SNI against an innocuous one at the helper's replay listener",
        "replay",
    ),
    Key("throughput", "replay_bytes", _positive_int, 128 << 10, "bytes per replay transfer"),
    Key("throughput", "replay_seconds", _positive_seconds, 5.0, "seconds per replay transfer"),
    Key(
        "throughput",
        "reference",
        _list(_url(("https",))),
        [],
        "reference URLs to time (default: control.reference)",
        "throughput-reference",
    ),
)


def _helper(name: str, parse: Callable[[Any], Any], default: Any, help: str) -> Key:
    return Key("helper", name, parse, default, help, env_name=f"PROBE_HELPER_{name.upper()}")


# ``probe helper serve``: the control helper, on an uncensored network. Its resolver and
# trust anchors are its own, apart from the probe's [network] (one file may hold both).
HELPER_KEYS: tuple[Key, ...] = (
    _helper("listen", _listen, "127.0.0.1:8080", "where to listen, ADDR:PORT"),
    _helper("resolver", _resolver, None, "DNS resolver (default: the system's)"),
    _helper("ca_bundle", _file, None, "PEM trust anchors (default: the system's)"),
    _helper("routable", _list(_cidr), [], "reserved ranges to treat as public (test labs only)"),
    _helper("timeout", _positive_seconds, 5.0, "per connect, handshake or request, seconds"),
    _helper("concurrency", _positive_int, 16, "checks run at once"),
    _helper(
        "token_file",
        _token_file,
        None,
        "require the token on this file's first line from every probe (the probe's "
        "control.helper_token_file)",
    ),
    _helper(
        "throughput_bytes_per_hour",
        _int,
        1 << 30,
        "bytes the helper may download for throughput tests per hour (0: none)",
    ),
    _helper(
        "read_timeout",
        _positive_seconds,
        5.0,
        "seconds a client has to send a request's headers, and again its body; an idle "
        "kept-alive connection is closed after as long",
    ),
    _helper(
        "replay_listen",
        _listen,
        None,
        "also listen for TLS here, ADDR:PORT (443 for real policers), for the probes' SNI "
        "replay: any name in the ClientHello, bytes sent and sunk within the hourly budget",
    ),
    _helper(
        "replay_public_port",
        _port,
        None,
        "the port probes are told to replay to, when a forward (443 to an unprivileged "
        "replay_listen port, say) puts the listener elsewhere; default: replay_listen's",
    ),
    _helper("asn_db", _file, None, ".mmdb file whoami reads ASNs from (GeoLite2-ASN, ...)"),
    _helper("country_db", _file, None, ".mmdb file whoami reads countries from (may be asn_db)"),
    _helper(
        "per_client_connections",
        _positive_int,
        32,
        "connections one client address may hold at once; more are answered 429 and closed",
    ),
)


def _daemon(name: str, parse: Callable[[Any], Any], default: Any, help: str) -> Key:
    return Key("daemon", name, parse, default, help, env_name=f"PROBE_DAEMON_{name.upper()}")


# ``probe daemon``'s defaults of the probe's keys where they differ from ``probe run``'s.
# Fewer inputs at once: the daemon shares a volunteer's machine and home link for months,
# and a sweep every half hour has no need to finish in 1.5 s rather than 2.2 s. 128 working
# inputs peaked at 80 MB (bench/daemon.py), 32 at 73 MB: the handshakes in flight are most
# of what a sweep adds to the imports' 60 MB.
DAEMON_DEFAULTS: dict[str, Any] = {"limits.concurrency": 32}

# ``probe daemon``: which groups of services are swept how often (probe/daemon/schedule.py).
DAEMON_KEYS: tuple[Key, ...] = (
    _daemon(
        "group",
        parse_groups,
        [],
        "a group of services and its interval: [[daemon.group]] name, categories, services, "
        "every (flag: NAME=CATEGORY+CATEGORY@EVERY, repeatable); default: messaging every 30m, "
        "the rest every 60m",
    ),
    _daemon("throughput_every", parse_duration, 6 * 3600.0, "throughput tests at most this often"),
    _daemon("jitter", parse_share, 0.1, "random delay of each sweep, as a share of its interval"),
    _daemon("jitter_max", _seconds, 300.0, "the random delay's cap, seconds"),
    _daemon("stop_deadline", _seconds, 10.0, "on SIGTERM, seconds left to inputs in flight"),
    _daemon("network_poll", _positive_seconds, 30.0, "seconds between checks for a new network"),
)


def _collector(name: str, parse: Callable[[Any], Any], default: Any, help: str) -> Key:
    flag = "collector" if name == "url" else None
    return Key("collector", name, parse, default, help, flag, f"PROBE_COLLECTOR_{name.upper()}")


# ``probe upload`` and the daemon's uploads to a central collector (probe/collector/). The
# token itself may also come from PROBE_COLLECTOR_TOKEN (a secret, so never a flag).
COLLECTOR_KEYS: tuple[Key, ...] = (
    _collector("url", _url(("https", "http")), None, "the central collector's URL"),
    _collector(
        "token_file", _token_file, None, "file whose first line is this probe's upload token"
    ),
    _collector("batch_size", _positive_int, 500, "measurements per upload at most"),
    _collector(
        "upload_every", parse_duration, 300.0, "the daemon uploads after a sweep at most this often"
    ),
)
ALL_KEYS: tuple[Key, ...] = KEYS + HELPER_KEYS + DAEMON_KEYS + COLLECTOR_KEYS
BY_DOTTED = {k.dotted: k for k in ALL_KEYS}
# Settings that name a file: what a run stores of them is the file name (see stored_value).
FILE_KEYS: frozenset[str] = frozenset(
    k.dotted for k in ALL_KEYS if k.parse in (_file, _token_file, _geoip_files)
)
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(k.section for k in ALL_KEYS))


def stored_value(dotted: str, value: Any) -> Any:
    """A setting as a run stores it: a file by its name alone ("helper.token"), else as is."""
    if dotted in FILE_KEYS and isinstance(value, str):
        # The directory is often the volunteer's home ("/home/<user>/..."): it names them.
        # PureWindowsPath splits on "/" and "\\" alike, whichever system wrote the setting.
        return PureWindowsPath(value).name
    if dotted in FILE_KEYS and isinstance(value, list):
        return [stored_value(dotted, v) for v in value]
    return value
