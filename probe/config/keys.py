"""Every setting's key: its TOML place, flag, environment variable, parser, default and help.

The probe's keys derive the environment variable from the flag (``--ca-bundle`` ->
``PROBE_CA_BUNDLE``); the helper's (``[helper]``, read by ``probe helper serve``) from the
name (``PROBE_HELPER_LISTEN``). List values in the environment are comma-separated.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Any

from measurements.addresses import canonical_address, parse_networks, split_host_port
from probe.config import sections
from targets.model import quoted

APP = "blocking-probe"

# Public DoH resolvers used only as controls; the sweep reaches them only after the vantage
# check has shown the reference hosts answer.
DEFAULT_DOH = list(sections.DEFAULT_DOH)


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected a non-empty string")
    return v.strip()


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("expected an integer")
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise ValueError(f"expected an integer, got {quoted(v)}") from None
    if n < 0:
        raise ValueError("must not be negative")
    return n


def _port(v: Any) -> int:
    n = _int(v)
    if not 1 <= n <= 65535:
        raise ValueError(f"expected a port from 1 to 65535, got {quoted(v)}")
    return n


def _positive_int(v: Any) -> int:
    n = _int(v)
    if n < 1:
        raise ValueError("must be at least 1")
    return n


def _seconds(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("expected a number of seconds")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of seconds, got {quoted(v)}") from None
    if not 0 <= x <= 86400:
        raise ValueError("must be between 0 and 86400 seconds")
    return x


def _positive_seconds(v: Any) -> float:
    x = _seconds(v)
    if x <= 0:
        raise ValueError("must be more than 0 seconds")
    return x


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {quoted(v)}")


def _trials(v: Any) -> int:
    n = _int(v)
    if n < 3:
        raise ValueError("must be at least 3 (a statistical test needs several trials)")
    return n


def _sample_interval(v: Any) -> float:
    x = _seconds(v)
    if not 0.005 <= x <= 1.0:
        raise ValueError("must be between 0.005 and 1 second")
    return x


def _list(item: Callable[[Any], str]) -> Callable[[Any], list[str]]:
    def parse(v: Any) -> list[str]:
        if isinstance(v, str):
            v = [p for p in (s.strip() for s in v.split(",")) if p]
        if not isinstance(v, list):
            raise ValueError("expected a list of strings")
        return [item(x) for x in v]

    return parse


def _url(schemes: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        s = _str(v)
        m = re.match(r"^([a-z]+)://([^/\s]+)(/\S*)?$", s)
        if m is None or m.group(1) not in schemes:
            raise ValueError(f"expected a {'/'.join(schemes)} URL, got {quoted(s)}")
        return s

    return parse


def _resolver(v: Any) -> str:
    s = _str(v)
    try:
        host, port = split_host_port(s, 0)
    except ValueError:
        host, port = "", 0
    ip = canonical_address(host)
    if ip is None:
        raise ValueError(f"expected an IP address with an optional :port, got {quoted(s)}")
    # "0x7f.1" suits getaddrinfo, not dnspython: keep the standard spelling
    return (f"[{ip}]" if ":" in ip else ip) + (f":{port}" if port else "")


def _listen(v: Any) -> str:
    s = _str(v)
    try:
        host, _ = split_host_port(s)
    except ValueError as exc:
        raise ValueError(f"expected ADDR:PORT: {exc}") from None
    if not host:
        raise ValueError(f"expected ADDR:PORT, got {quoted(s)}")
    return s


def _country(v: Any) -> str:
    s = _str(v).upper()
    if not re.fullmatch(r"[A-Z]{2}", s):
        raise ValueError(f"expected a two-letter country code, got {quoted(v)}")
    return s


def _cidr(v: Any) -> str:
    s = _str(v)
    parse_networks([s])
    return s


def parse_duration(v: Any) -> str:
    """A retention window in its canonical spelling: "90d", "36h" or "2w" (a bare number is
    days); "never" for 0 or "never": keep everything. No "m": months or minutes?"""
    if isinstance(v, bool):
        raise ValueError("expected a duration such as 90d, 36h or 2w, or never")
    text = str(v).strip().lower()
    m = re.fullmatch(rf"(\d{{1,6}})\s*([{''.join(sections.DURATION_UNITS)}]?)", text)
    if text == "never" or (m is not None and int(m.group(1)) == 0):
        return "never"
    if m is None:
        raise ValueError(f"expected a duration such as 90d, 36h or 2w, or never; got {quoted(v)}")
    return f"{int(m.group(1))}{m.group(2) or 'd'}"


def _file(v: Any) -> str:
    s = _str(v)
    if not os.path.isfile(s) or not os.access(s, os.R_OK):
        raise ValueError(f"no readable file at {s!r}")
    return s


TOKEN_MAX = 256


def read_token_file(path: str) -> str:
    """The shared secret a token file holds on its first line (the control helper's)."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not 0 < len(token) <= TOKEN_MAX or not token.isascii() or not token.isprintable():
        raise ValueError(
            f"{path}, line 1: expected the token, 1 to {TOKEN_MAX} printable ASCII characters"
        )
    if " " in token:
        raise ValueError(f"{path}, line 1: the token may not contain spaces")
    return token


def _token_file(v: Any) -> str:
    # Only checked for readability here: the loader reads the token once, naming where the
    # setting came from when the file's first line is not a token.
    return _file(v)


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
        parse_duration,
        "30d",
        "keep evidence this long (30d, 36h, 2w; never: keep all); verdicts are always kept",
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
    _helper(
        "per_client_connections",
        _positive_int,
        32,
        "connections one client address may hold at once; more are answered 429 and closed",
    ),
)
ALL_KEYS: tuple[Key, ...] = KEYS + HELPER_KEYS
BY_DOTTED = {k.dotted: k for k in ALL_KEYS}
# Settings that name a file: what a run stores of them is the file name (see stored_value).
FILE_KEYS: frozenset[str] = frozenset(k.dotted for k in ALL_KEYS if k.parse in (_file, _token_file))
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(k.section for k in ALL_KEYS))


def stored_value(dotted: str, value: Any) -> Any:
    """A setting as a run stores it: a file by its name alone ("helper.token"), else as is."""
    if dotted in FILE_KEYS and isinstance(value, str):
        # The directory is often the volunteer's home ("/home/<user>/..."): it names them.
        # PureWindowsPath splits on "/" and "\\" alike, whichever system wrote the setting.
        return PureWindowsPath(value).name
    return value
