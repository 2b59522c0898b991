"""Settings from flags, a TOML file, the environment and defaults, each value with its source.

Precedence is flag > file > environment > default (docs/architecture.md, Settings). Every key
has a flag and an environment variable derived from the flag (``--ca-bundle`` ->
``PROBE_CA_BUNDLE``); list values in the environment are comma-separated. Errors name the file
and line, the flag or the variable, and the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

import platformdirs

from measurements.addresses import canonical_address, parse_networks
from targets.model import quoted

APP = "blocking-probe"

# Public DoH resolvers used only as controls; the sweep reaches them only after the vantage
# check has shown the reference hosts answer.
DEFAULT_DOH = ["https://cloudflare-dns.com/dns-query", "https://dns.google/dns-query"]


class ConfigError(ValueError):
    """A setting that cannot be used, with where it came from."""


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
    if s.startswith("["):  # [v6] or [v6]:port
        host, _, rest = s[1:].partition("]")
        port = rest.removeprefix(":")
    elif s.count(":") == 1:
        host, _, port = s.partition(":")
    else:  # v4, or a bare v6 address
        host, port = s, ""
    ip = canonical_address(host)
    if ip is None or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"expected an IP address with an optional :port, got {quoted(s)}")
    if ip != host:  # "0x7f.1" suits getaddrinfo, not dnspython: keep the standard spelling
        s = (f"[{ip}]" if ":" in ip else ip) + (f":{port}" if port else "")
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
    path = _file(v)
    read_token_file(path)
    return path


@dataclass(frozen=True, slots=True)
class Key:
    """One setting: its TOML place, its parser, its default and its help."""

    section: str
    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    flag_name: str | None = None

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.name.replace("_", "-"))

    @property
    def env(self) -> str:
        return "PROBE_" + self.flag[2:].replace("-", "_").upper()

    @property
    def is_list(self) -> bool:
        return isinstance(self.default, list)


KEYS: tuple[Key, ...] = (
    Key("vantage", "name", _str, None, "a name for this vantage point", "vantage-name"),
    Key("vantage", "network_type", _str, None, "home, mobile, datacenter, ..."),
    Key("vantage", "asn", _positive_int, None, "the network's AS number, if you want it recorded"),
    Key("vantage", "country", _country, None, "two-letter country code"),
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
        "reference",
        _list(_url(("https",))),
        [],
        "reference URLs to time (default: control.reference)",
        "throughput-reference",
    ),
)
BY_DOTTED = {k.dotted: k for k in KEYS}
# Settings that name a file: what a run stores of them is the file name (see stored_value).
FILE_KEYS: frozenset[str] = frozenset(k.dotted for k in KEYS if k.parse in (_file, _token_file))


def stored_value(dotted: str, value: Any) -> Any:
    """A setting as a run stores it: a file by its name alone ("helper.token"), else as is."""
    if dotted in FILE_KEYS and isinstance(value, str):
        # The directory is often the volunteer's home ("/home/<user>/..."): it names them.
        # PureWindowsPath splits on "/" and "\\" alike, whichever system wrote the setting.
        return PureWindowsPath(value).name
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """The effective settings: ``values[dotted]`` and where each came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]  # "flag", "file:PATH", "env:NAME", "default"
    config_file: str | None

    def __getitem__(self, dotted: str) -> Any:
        return self.values[dotted]


def default_config_path() -> Path:
    """Where the config file is looked for when neither --config nor PROBE_CONFIG says."""
    return platformdirs.user_config_path(APP) / "config.toml"


def _line_of(text: str, section: str, name: str | None) -> int:
    """The line of ``[section]`` or of ``name =`` inside it (tomllib keeps no positions)."""
    current, header_line = None, 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = re.match(r"^\[([^\]]+)\]", line)
        if m:
            current = m.group(1).strip()
            if current == section and name is None:
                return no
            header_line = no if current == section else header_line
        elif current == section and name and re.match(rf"^{re.escape(name)}\s*=", line):
            return no
    return header_line or 1


def _read_file(path: str) -> dict[str, tuple[Any, int]]:
    """Values of a config file keyed by dotted name, each with its line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the config file is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(f"{path}:{m.group(1) if m else 1}: {exc}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively: bad input, not a crash.
        raise ConfigError(f"{path}: arrays or tables nested too deeply") from None
    out: dict[str, tuple[Any, int]] = {}
    for section, table in data.items():
        if not isinstance(table, dict) or section not in {k.section for k in KEYS}:
            known = ", ".join(sorted({k.section for k in KEYS}))
            line = _line_of(text, section, None)
            raise ConfigError(f"{path}:{line}: [{section}]: unknown section (known: {known})")
        for name, value in table.items():
            line = _line_of(text, section, name)
            if f"{section}.{name}" not in BY_DOTTED:
                known = ", ".join(k.name for k in KEYS if k.section == section)
                raise ConfigError(f"{path}:{line}: {section}.{name}: unknown key (known: {known})")
            out[f"{section}.{name}"] = (value, line)
    return out


def load_settings(
    flags: Mapping[str, Any],
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the four sources; ``flags`` maps dotted keys to values given on the command line."""
    environ = os.environ if environ is None else environ
    path = config_file or environ.get("PROBE_CONFIG")
    if path is None and default_config_path().is_file():
        path = str(default_config_path())
    from_file = _read_file(path) if path else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in KEYS:
        if flags.get(key.dotted) not in (None, []):
            raw, source, where = flags[key.dotted], "flag", key.flag
        elif key.dotted in from_file:
            raw, line = from_file[key.dotted]
            source, where = f"file:{path}", f"{path}:{line}: {key.dotted}"
        elif environ.get(key.env):
            raw, source, where = environ[key.env], f"env:{key.env}", key.env
        else:
            values[key.dotted], sources[key.dotted] = key.default, "default"
            continue
        try:
            values[key.dotted] = key.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        sources[key.dotted] = source
    return Settings(values, sources, path)
