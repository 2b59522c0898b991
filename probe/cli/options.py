"""Options shared by commands: one flag per configuration key, --config and --db."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from probe.config import KEYS, Key, Settings, load_settings


def add_target_flags(p: argparse.ArgumentParser) -> None:
    """--targets and --category, as every command that sweeps takes them."""
    p.add_argument(
        "--targets",
        action="append",
        metavar="FILE",
        help="target list (TOML, or a Citizen Lab .csv); repeatable; default: the bundled list",
    )
    p.add_argument(
        "--category", metavar="CODES", help="for .csv lists: category codes to keep, e.g. GRP,COMT"
    )


def add_setting_flags(
    parser: argparse.ArgumentParser, sections: tuple[str, ...] = (), keys: tuple[Key, ...] = KEYS
) -> None:
    """A flag for every configuration key of ``keys`` (in the given sections, or all)."""
    parser.add_argument("--config", metavar="FILE", help="config file (TOML)")
    group = parser.add_argument_group("settings (each also a config key and PROBE_* variable)")
    for key in keys:
        if sections and key.section not in sections:
            continue
        if isinstance(key.default, bool):  # --x / --no-x; unset stays None (not a flag)
            group.add_argument(
                key.flag,
                dest="setting:" + key.dotted,
                action=argparse.BooleanOptionalAction,
                help=f"{key.help} [{key.dotted}, {key.env}]",
            )
            continue
        kwargs: dict[str, Any] = {
            "dest": "setting:" + key.dotted,
            "metavar": key.name.split("_")[-1].upper(),
            "help": f"{key.help} [{key.dotted}, {key.env}]",
        }
        if key.is_list:
            kwargs["action"] = "append"
        group.add_argument(key.flag, **kwargs)


def setting_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, by dotted key."""
    return {
        name.removeprefix("setting:"): value
        for name, value in vars(args).items()
        if name.startswith("setting:")
    }


def settings_from(args: argparse.Namespace, defaults: Mapping[str, Any] | None = None) -> Settings:
    """Settings from parsed flags, the config file, the environment and the defaults (a
    command's own ``defaults`` first)."""
    return load_settings(setting_flags(args), getattr(args, "config", None), defaults=defaults)
