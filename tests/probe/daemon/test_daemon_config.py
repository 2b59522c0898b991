"""The [daemon] section: groups as an array of tables, durations, errors with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.config import DEFAULT_GROUPS, ConfigError, DaemonGroup, load_daemon_settings
from probe.config.daemon_values import parse_duration
from probe.config.sections import DaemonSettings
from probe.daemon.groups import targets_of
from targets.load import load_default

GOOD = """[vantage]
name = "home"

[daemon]
jitter = 0.05
throughput_every = "12h"

[[daemon.group]]
name = "messaging"
categories = ["messaging"]
every = "30m"

[[daemon.group]]
name = "video"
services = ["youtube"]
every = "2h"
throughput_every = "1d"

[[daemon.group]]
name = "rest"
every = "1h"
"""


def _load(tmp_path: Path, text: str) -> DaemonSettings:
    path = tmp_path / "probe.toml"
    path.write_text(text, encoding="utf-8")
    return load_daemon_settings({}, str(path), environ={}).daemon


def test_groups_from_an_array_of_tables(tmp_path: Path) -> None:
    d = _load(tmp_path, GOOD)
    assert d.groups == (
        DaemonGroup("messaging", ("messaging",), (), 1800.0, None),
        DaemonGroup("video", (), ("youtube",), 7200.0, 86400.0),
        DaemonGroup("rest", (), (), 3600.0, None),
    )
    assert (d.jitter, d.throughput_every) == (0.05, 43200.0)


def test_the_default_schedule(tmp_path: Path) -> None:
    d = _load(tmp_path, "")
    assert d == DaemonSettings() and d.groups == DEFAULT_GROUPS


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ('every = "2h"', 'every = "soon"'),
            r"probe.toml:16: daemon.group\[2\].every: expected a duration",
        ),
        (
            ('services = ["youtube"]', "services = [1]"),
            r"probe.toml:15: daemon.group\[2\].services: expected a list",
        ),
        (
            ('name = "video"', 'name = "messaging"'),
            r"probe.toml:14: daemon.group\[2\].name: 'messaging' names two groups",
        ),
        (
            ('every = "2h"\n', 'every = "2h"\ncolour = "red"\n'),
            r"probe.toml:17: daemon.group\[2\].colour: unknown field",
        ),
        (('every = "1h"', "categories = []"), r"probe.toml:19: daemon.group\[3\].every: missing"),
        (
            ('services = ["youtube"]\n', ""),
            r"probe.toml:\d+: daemon.group\[\d\].categories: only one group may take the rest",
        ),
        (("jitter = 0.05", "jitter = 0.9"), r"probe.toml:5: daemon.jitter: must be from 0 to 0.5"),
    ],
)
def test_bad_values_name_file_line_and_field(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        _load(tmp_path, GOOD.replace(*edit, 1))


def test_groups_from_flags_and_the_environment() -> None:
    flags = {"daemon.group": ["chat=messaging@90s", "rest=*@2h"]}
    d = load_daemon_settings(flags, None, environ={}).daemon
    assert [(g.name, g.categories, g.every) for g in d.groups] == [
        ("chat", ("messaging",), 90.0), ("rest", (), 7200.0),
    ]  # fmt: skip
    env = {"PROBE_DAEMON_GROUP": "a=messaging+social@1h30m"}
    (g,) = load_daemon_settings({}, None, environ=env).daemon.groups
    assert g.categories == ("messaging", "social") and g.every == 5400.0
    with pytest.raises(ConfigError, match=r"^--group: expected NAME=CATEGORY"):
        load_daemon_settings({"daemon.group": ["nonsense"]}, None, environ={})
    with pytest.raises(ConfigError, match=r"^PROBE_DAEMON_STOP_DEADLINE: "):
        load_daemon_settings({}, None, environ={"PROBE_DAEMON_STOP_DEADLINE": "x"})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800.0), ("6h", 21600.0), ("90s", 90.0), ("1h30m", 5400.0), (" 2 s ", 2.0),
     (45, 45.0), ("0.5s", 0.5), ("1d", 86400.0)],
)  # fmt: skip
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0s", "-5m", "8d", "5 parsecs", True, "1h junk"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_groups_share_out_the_bundled_list() -> None:
    targets = load_default()
    split = targets_of(DEFAULT_GROUPS, targets)
    messaging = {s.name for s in split["messaging"].services}
    rest = {s.name for s in split["rest"].services}
    assert messaging and rest and not messaging & rest
    assert messaging | rest == set(targets.names())
    assert all(s.category == "messaging" for s in split["messaging"].services)
    assert split["rest"].references == targets.references
