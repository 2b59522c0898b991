"""``probe config show``: every setting, its value and where it came from."""

from __future__ import annotations

import argparse
from typing import Any

from probe.cli.options import add_setting_flags, settings_from
from probe.cli.render import print_json, table
from probe.config import (
    DAEMON_DEFAULTS,
    DAEMON_KEYS,
    HELPER_KEYS,
    KEYS,
    default_config_path,
    load_daemon_settings,
    load_helper_settings,
)


def register(sub: Any) -> None:
    """Add the commands to the parser."""
    p = sub.add_parser("config", help="show the effective configuration")
    csub = p.add_subparsers(dest="config_command", required=True)
    sp = csub.add_parser("show", help="each setting, its value and its source")
    sp.add_argument("--json", action="store_true")
    add_setting_flags(sp)
    sp.set_defaults(handler=show)


def show(args: argparse.Namespace) -> int:
    """Print the merged settings."""
    settings = settings_from(args)
    # The helper's own section (``probe helper serve``), read from the same file and variables.
    helper = load_helper_settings({}, args.config).provenance
    daemon = load_daemon_settings({}, args.config).provenance  # ``probe daemon``'s section
    shown = settings.provenance.rows(KEYS) + helper.rows(HELPER_KEYS) + daemon.rows(DAEMON_KEYS)
    if args.json:
        print_json(
            "config",
            {
                "config_file": settings.config_file,
                "settings": {
                    k.dotted: {"value": value, "source": source} | _daemon_default(k.dotted, source)
                    for k, value, source in shown
                },
            },
        )
        return 0
    rows = [
        (k.dotted, _fmt(v), " ".join([source, *_daemon_note(k.dotted, source)]))
        for k, v, source in shown
    ]
    print(table(("key", "value", "source"), rows))
    where = settings.config_file or f"none (looked for {default_config_path()})"
    print(f"\nconfig file: {where}")
    print("precedence: flag > file > environment (PROBE_*) > default")
    return 0


def _daemon_default(dotted: str, source: str) -> dict[str, Any]:
    """A default that ``probe daemon`` replaces with its own (DAEMON_DEFAULTS)."""
    if source == "default" and dotted in DAEMON_DEFAULTS:
        return {"daemon_default": DAEMON_DEFAULTS[dotted]}
    return {}


def _daemon_note(dotted: str, source: str) -> list[str]:
    return [f"(probe daemon: {v})" for v in _daemon_default(dotted, source).values()]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(_fmt_item, value)) if value else "[]"
    return str(value)


def _fmt_item(item: Any) -> str:
    if isinstance(item, dict):  # a [[daemon.group]] entry
        names = "+".join([*item.get("categories", []), *item.get("services", [])]) or "*"
        return f"{item.get('name')}={names}@{item.get('every'):g}s"
    return str(item)
