"""The daemon's values: durations ("30m"), shares of an interval, and groups of targets.

A group is an entry of an array of tables (``[[daemon.group]]``), the one setting that is not
a scalar or a list of strings. Its parser returns plain dicts (JSON-ready, as a run's
provenance keeps values); an error in an entry is an ``EntryError`` naming the entry and
field, which the loader turns into the file's line (``settings._entry_line``).
On a command line or in ``PROBE_DAEMON_GROUP`` a group is ``NAME=CATEGORY+CATEGORY@EVERY``
(``=*`` or nothing: every service no other group takes), groups comma-separated.
"""

from __future__ import annotations

import re
from typing import Any

from targets.model import quoted

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = 7 * 86400.0
GROUP_FIELDS = ("name", "categories", "services", "every", "throughput_every")


class EntryError(ValueError):
    """A bad field in one entry of an array of tables (0-based index)."""

    def __init__(self, index: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.field = field

    def __str__(self) -> str:
        where = f"[{self.index + 1}]" + (f".{self.field}" if self.field else "")
        return f"entry {where}: {self.args[0]}"


def parse_duration(v: Any) -> float:
    """Seconds from a number or text: "90s", "30m", "6h", "1h30m", "0.5s" (up to 7 days)."""
    if isinstance(v, bool):
        raise ValueError("expected a duration such as 30m")
    if isinstance(v, int | float):
        x = float(v)
    else:
        text = str(v).strip().lower()
        unit = r"(\d+(?:\.\d+)?)\s*([smhd])"
        parts = re.findall(unit, text)
        if parts and not re.sub(unit + r"|\s", "", text):
            x = sum(float(n) * _UNITS[u] for n, u in parts)
        else:
            try:
                x = float(text)
            except ValueError:
                raise ValueError(
                    f"expected a duration such as 30m, 6h or 90s, got {quoted(v)}"
                ) from None
    if not 0 < x <= MAX_DURATION:
        raise ValueError("must be more than 0 seconds and at most 7 days")
    return x


def parse_share(v: Any) -> float:
    """A share of an interval, 0 to 0.5 (the jitter)."""
    if isinstance(v, bool):
        raise ValueError("expected a share from 0 to 0.5")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"expected a share from 0 to 0.5, got {quoted(v)}") from None
    if not 0 <= x <= 0.5:
        raise ValueError("must be from 0 to 0.5 (a share of the interval)")
    return x


def _names(index: int, field: str, v: Any) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise EntryError(index, field, "expected a list of names")
    return [x.strip() for x in v]


def _entry(index: int, raw: Any) -> dict[str, Any]:
    """One group, checked, with every field present (None or [] where not given)."""
    if not isinstance(raw, dict):
        raise EntryError(index, None, "expected a table with name, categories and every")
    for name in raw:
        if name not in GROUP_FIELDS:
            known = ", ".join(GROUP_FIELDS)
            raise EntryError(index, name, f"unknown field (known: {known})")
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise EntryError(
            index, "name", f"expected a short name (letters, digits, -_.), got {quoted(name)}"
        )
    if "every" not in raw:
        raise EntryError(index, "every", "missing: how often the group is swept, e.g. 30m")
    out: dict[str, Any] = {"name": name}
    for field in ("categories", "services"):
        out[field] = _names(index, field, raw.get(field, []))
    for field in ("every", "throughput_every"):
        try:
            out[field] = parse_duration(raw[field]) if field in raw else None
        except ValueError as exc:
            raise EntryError(index, field, str(exc)) from None
    return out


def _from_text(text: str) -> list[Any]:
    """Groups written ``NAME=CAT+CAT@EVERY``, comma-separated (flags and variables)."""
    out: list[Any] = []
    for part in (p.strip() for p in text.split(",")):
        m = re.fullmatch(r"([^=@]+)=([^@]*)@(.+)", part)
        if m is None:
            raise ValueError(f"expected NAME=CATEGORY+CATEGORY@EVERY, got {quoted(part)}")
        cats = [c for c in m.group(2).strip().split("+") if c.strip() and c.strip() != "*"]
        out.append({"name": m.group(1).strip(), "categories": cats, "every": m.group(3).strip()})
    return out


def parse_groups(v: Any) -> list[dict[str, Any]]:
    """The groups of a ``[[daemon.group]]`` array (or its text form); [] for the default."""
    if isinstance(v, str):
        v = _from_text(v)
    if not isinstance(v, list):
        raise ValueError("expected [[daemon.group]] tables")
    items: list[Any] = []
    for item in v:  # repeated flags give a list of texts
        items += _from_text(item) if isinstance(item, str) else [item]
    groups = [_entry(i, raw) for i, raw in enumerate(items)]
    seen: set[str] = set()
    rest = 0
    for i, g in enumerate(groups):
        if g["name"] in seen:
            raise EntryError(i, "name", f"{quoted(g['name'])} names two groups")
        seen.add(g["name"])
        if not g["categories"] and not g["services"]:
            rest += 1
            if rest > 1:
                raise EntryError(
                    i, "categories", "only one group may take the rest (no categories or services)"
                )
    return groups
