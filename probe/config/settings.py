"""Settings built once from flags, a TOML file, the environment and defaults, with provenance.

Precedence is flag > file > environment > default (docs/architecture.md, "Settings"). What
the rest of the probe reads is a frozen ``Settings`` of typed sections; the values as given
and where each came from stay beside them for ``probe config show`` and the run record.
Errors name the file and line, the flag or the variable, and the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

from measurements.addresses import parse_networks
from probe.config.daemon_values import EntryError
from probe.config.keys import (
    ALL_KEYS,
    APP,
    BY_DOTTED,
    COLLECTOR_KEYS,
    DAEMON_KEYS,
    HELPER_KEYS,
    KEYS,
    SECTIONS,
    Key,
    stored_value,
)
from probe.config.sections import (
    CollectorSettings,
    ControlSettings,
    DaemonGroup,
    DaemonSettings,
    HelperServeSettings,
    LimitSettings,
    NetworkSettings,
    StorageSettings,
    ThroughputSettings,
    VantageSettings,
)
from probe.config.values import read_token_file

S = TypeVar("S")


class ConfigError(ValueError):
    """A setting that cannot be used, with where it came from."""


@dataclass(frozen=True, slots=True)
class Provenance:
    """Each setting as given (after checking) and where it came from."""

    values: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)  # flag, file:PATH, env:NAME, default
    config_file: str | None = None

    def rows(self, keys: tuple[Key, ...]) -> list[tuple[Key, Any, str]]:
        """(key, value, source) for each of ``keys``, in their order."""
        return [(k, self.values.get(k.dotted, k.default), self.sources.get(k.dotted, "default"))
                for k in keys]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Settings:
    """The probe's effective settings: typed sections, and where each value came from."""

    vantage: VantageSettings = field(default_factory=VantageSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    control: ControlSettings = field(default_factory=ControlSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    throughput: ThroughputSettings = field(default_factory=ThroughputSettings)
    provenance: Provenance = field(default_factory=Provenance)

    @property
    def sources(self) -> Mapping[str, str]:
        """Where each value came from, by dotted key."""
        return self.provenance.sources

    @property
    def config_file(self) -> str | None:
        """The config file read, if any."""
        return self.provenance.config_file

    def value(self, dotted: str) -> Any:
        """A value as given, by dotted key (``probe config show``; tests)."""
        return self.provenance.values.get(dotted, BY_DOTTED[dotted].default)

    def public(self) -> dict[str, Any]:
        """Settings worth keeping with the run (everything here is the volunteer's choice)."""
        return {
            k.dotted: stored_value(k.dotted, self.value(k.dotted))
            for k in KEYS
            if k.section != "storage"
        }


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """``probe daemon``'s own settings (the ``[daemon]`` section) and their provenance."""

    daemon: DaemonSettings
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class HelperConfig:
    """``probe helper serve``'s effective settings and their provenance."""

    helper: HelperServeSettings
    provenance: Provenance


def default_config_path() -> Path:
    """Where the config file is looked for when neither --config nor PROBE_CONFIG says."""
    return platformdirs.user_config_path(APP) / "config.toml"


# ``[section]``, and ``[[section.name]]`` (an entry of an array of tables, [[daemon.group]]).
_HEADER = re.compile(r"^\[\[?\s*([^\]]+?)\s*\]\]?")


def _line_of(text: str, section: str, name: str | None) -> int:
    """The line of ``[section]`` or of ``name =`` inside it (tomllib keeps no positions)."""
    current, header_line = None, 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = _HEADER.match(line)
        if m:
            current = m.group(1)
            if current == section and name is None:
                return no
            if name is not None and current == f"{section}.{name}":
                return no  # the first entry of an array of tables
            header_line = no if current == section else header_line
        elif current == section and name and re.match(rf"^{re.escape(name)}\s*=", line):
            return no
    return header_line or 1


def _entry_line(text: str, dotted: str, index: int, field: str | None) -> int:
    """The line of ``field`` in the index-th ``[[dotted]]`` entry, else of the entry itself."""
    count, current, header = -1, None, 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = _HEADER.match(line)
        if m:
            current = m.group(1)
            if current == dotted and line.startswith("[["):
                count += 1
                header = no if count == index else header
        elif current == dotted and count == index and field:
            if re.match(rf"^{re.escape(field)}\s*=", line):
                return no
    return header or _line_of(text, *dotted.split(".", 1))


def _read_file(path: str) -> tuple[dict[str, tuple[Any, int]], str]:
    """Values of a config file keyed by dotted name, each with its line; and the text."""
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
        if not isinstance(table, dict) or section not in SECTIONS:
            known = ", ".join(sorted(SECTIONS))
            line = _line_of(text, section, None)
            raise ConfigError(f"{path}:{line}: [{section}]: unknown section (known: {known})")
        for name, value in table.items():
            line = _line_of(text, section, name)
            if f"{section}.{name}" not in BY_DOTTED:
                known = ", ".join(k.name for k in ALL_KEYS if k.section == section)
                raise ConfigError(f"{path}:{line}: {section}.{name}: unknown key (known: {known})")
            out[f"{section}.{name}"] = (value, line)
    return out, text


def _merge(
    keys: tuple[Key, ...],
    flags: Mapping[str, Any],
    path: str | None,
    environ: Mapping[str, str],
    defaults: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Values, sources and "where" (for errors) of ``keys`` from the four sources; a key
    none of them sets takes ``defaults``' value (a command's own), else its own default."""
    from_file, text = _read_file(path) if path else ({}, "")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    wheres: dict[str, str] = {}
    for key in keys:
        if flags.get(key.dotted) not in (None, []):
            raw, source, where = flags[key.dotted], "flag", key.flag
        elif key.dotted in from_file:
            raw, line = from_file[key.dotted]
            source, where = f"file:{path}", f"{path}:{line}: {key.dotted}"
        elif environ.get(key.env):
            raw, source, where = environ[key.env], f"env:{key.env}", key.env
        else:
            values[key.dotted] = defaults.get(key.dotted, key.default)
            sources[key.dotted] = "default"
            continue
        try:
            values[key.dotted] = key.parse(raw)
        except EntryError as exc:
            if source.startswith("file:"):
                line = _entry_line(text, key.dotted, exc.index, exc.field)
                field = f".{exc.field}" if exc.field else ""
                where = f"{path}:{line}: {key.dotted}[{exc.index + 1}]{field}"
                raise ConfigError(f"{where}: {exc.args[0]}") from None
            raise ConfigError(f"{where}: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        sources[key.dotted], wheres[key.dotted] = source, where
    return values, sources, wheres


def _section(cls: type[S], section: str, values: Mapping[str, Any]) -> S:
    """One typed section from the checked values: lists become tuples, ranges networks."""
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        dotted = f"{section}.{f.name}"
        if dotted not in values:
            continue  # a derived field (a token read from its file)
        value = values[dotted]
        if f.name == "routable":
            value = parse_networks(value)
        elif f.name == "group":  # [[daemon.group]]: checked dicts (daemon_values.parse_groups)
            value = tuple(_group(g) for g in value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _group(g: Mapping[str, Any]) -> DaemonGroup:
    return DaemonGroup(
        name=g["name"], categories=tuple(g["categories"]), services=tuple(g["services"]),
        every=g["every"], throughput_every=g["throughput_every"],
    )  # fmt: skip


def _token(dotted: str, values: Mapping[str, Any], wheres: Mapping[str, str]) -> str | None:
    """The token of a token-file setting, read once; its errors say where the setting came from."""
    path = values.get(dotted)
    if path is None:
        return None
    try:
        return read_token_file(path)
    except ValueError as exc:
        raise ConfigError(f"{wheres.get(dotted, BY_DOTTED[dotted].flag)}: {exc}") from None


def _config_path(config_file: str | None, environ: Mapping[str, str]) -> str | None:
    path = config_file or environ.get("PROBE_CONFIG")
    if path is None and default_config_path().is_file():
        path = str(default_config_path())
    return path


def _read(
    keys: tuple[Key, ...],
    flags: Mapping[str, Any],
    config_file: str | None,
    environ: Mapping[str, str] | None,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], Provenance, dict[str, str]]:
    """The checked values of ``keys`` from the four sources, their provenance, and where each
    came from (for the errors of what is read later, such as a token file)."""
    environ = os.environ if environ is None else environ
    path = _config_path(config_file, environ)
    values, sources, wheres = _merge(keys, flags, path, environ, defaults or {})
    return values, Provenance(values, sources, path), wheres


def load_settings(
    flags: Mapping[str, Any],
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Settings:
    """The probe's settings; ``flags`` maps dotted keys to values given on the command line,
    ``defaults`` to a command's own defaults (probe daemon's DAEMON_DEFAULTS)."""
    values, provenance, wheres = _read(KEYS, flags, config_file, environ, defaults)
    token = _token("control.helper_token_file", values, wheres)
    return Settings(
        vantage=_section(VantageSettings, "vantage", values),
        network=_section(NetworkSettings, "network", values),
        control=replace(_section(ControlSettings, "control", values), helper_token=token),
        storage=_section(StorageSettings, "storage", values),
        limits=_section(LimitSettings, "limits", values),
        throughput=_section(ThroughputSettings, "throughput", values),
        provenance=provenance,
    )


def load_helper_settings(
    flags: Mapping[str, Any],
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> HelperConfig:
    """``probe helper serve``'s settings (the ``[helper]`` section), the same way."""
    values, provenance, wheres = _read(HELPER_KEYS, flags, config_file, environ)
    token = _token("helper.token_file", values, wheres)
    helper = replace(_section(HelperServeSettings, "helper", values), token=token)
    return HelperConfig(helper, provenance)


def load_daemon_settings(
    flags: Mapping[str, Any],
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> DaemonConfig:
    """``probe daemon``'s own settings (the ``[daemon]`` section), the same way."""
    values, provenance, _ = _read(DAEMON_KEYS, flags, config_file, environ)
    return DaemonConfig(_section(DaemonSettings, "daemon", values), provenance)


def load_collector_settings(
    flags: Mapping[str, Any],
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> CollectorSettings:
    """The ``[collector]`` section; the token from its file, else PROBE_COLLECTOR_TOKEN."""
    environ = os.environ if environ is None else environ
    values, _, wheres = _read(COLLECTOR_KEYS, flags, config_file, environ)
    token = _token("collector.token_file", values, wheres) or environ.get("PROBE_COLLECTOR_TOKEN")
    return replace(_section(CollectorSettings, "collector", values), token=token or None)


__all__ = ["ALL_KEYS", "APP", "ConfigError", "Settings"]
