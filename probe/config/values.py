"""The parsers of setting values: each takes what a file, a flag or the environment gave and
returns the typed value, or raises ValueError saying what was expected (probe.config.keys
names the key and where the value came from)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import Any

from measurements.addresses import canonical_address, parse_networks, split_host_port
from probe.config import sections
from targets.model import quoted


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


def parse_retention(v: Any) -> str:
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


def _geoip_files(v: Any) -> list[str]:
    files = _list(_file)(v)
    if not 1 <= len(files) <= 2:
        raise ValueError("expected one or two .mmdb files (an ASN one and a country one)")
    return files


def _metered(v: Any) -> bool | str:
    if isinstance(v, str) and v.strip().lower() == "auto":
        return "auto"
    try:
        return _bool(v)
    except ValueError:
        raise ValueError(f"expected auto, true or false, got {quoted(v)}") from None


def _share(v: Any) -> float:
    try:
        x = math.nan if isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        x = math.nan
    if not 0 < x <= 1:  # NaN fails it too
        raise ValueError(f"expected a share of the link, above 0 and at most 1, got {quoted(v)}")
    return x


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
