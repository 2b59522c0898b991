"""Settings: precedence flag > file > environment > default, sources recorded, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.cli import main
from probe.config import (
    DAEMON_DEFAULTS,
    DEFAULT_DOH,
    KEYS,
    ConfigError,
    load_settings,
    read_token_file,
)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "probe.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_when_nothing_is_given(tmp_path: Path) -> None:
    s = load_settings({}, None, environ={"PROBE_CONFIG": write(tmp_path, "")})
    assert s.value("control.doh") == list(DEFAULT_DOH)
    assert s.control.doh == DEFAULT_DOH
    assert s.value("network.resolver") is None
    assert s.value("limits.concurrency") == 128
    assert set(s.sources.values()) == {"default"}


def test_precedence_flag_over_file_over_env(tmp_path: Path) -> None:
    path = write(tmp_path, '[vantage]\nname = "from-file"\ncountry = "kz"\n[limits]\nretries = 3\n')
    env = {"PROBE_VANTAGE_NAME": "from-env", "PROBE_ASN": "9198", "PROBE_RETRIES": "5"}
    s = load_settings({"vantage.name": "from-flag"}, path, environ=env)
    assert s.value("vantage.name") == "from-flag" and s.sources["vantage.name"] == "flag"
    assert s.value("vantage.country") == "KZ" and s.sources["vantage.country"] == f"file:{path}"
    assert s.value("limits.retries") == 3  # the file beats the environment
    assert s.value("vantage.asn") == 9198 and s.sources["vantage.asn"] == "env:PROBE_ASN"


def test_a_commands_own_default_gives_way_to_every_source(tmp_path: Path) -> None:
    """probe daemon's defaults (DAEMON_DEFAULTS) replace the keys' defaults only."""
    empty = {"PROBE_CONFIG": write(tmp_path, "")}
    s = load_settings({}, None, environ=empty, defaults=DAEMON_DEFAULTS)
    assert s.limits.concurrency == DAEMON_DEFAULTS["limits.concurrency"] != 128
    assert s.value("limits.concurrency") == s.limits.concurrency  # what the run stores
    assert s.sources["limits.concurrency"] == "default"
    path = tmp_path / "seven.toml"
    path.write_text("[limits]\nconcurrency = 7\n")
    assert (
        load_settings({}, str(path), environ={}, defaults=DAEMON_DEFAULTS).limits.concurrency == 7
    )
    env = {**empty, "PROBE_CONCURRENCY": "9"}
    assert load_settings({}, None, environ=env, defaults=DAEMON_DEFAULTS).limits.concurrency == 9
    flags = {"limits.concurrency": "11"}
    s = load_settings(flags, None, environ=env, defaults=DAEMON_DEFAULTS)
    assert s.limits.concurrency == 11


def test_config_show_names_the_daemons_own_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "show", "--config", write(tmp_path, "")]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("limits.conc")]
    assert line.split()[1:] == ["128", "default", "(probe", "daemon:", "32)"]
    path = write(tmp_path, "[limits]\nconcurrency = 64\n")
    assert main(["config", "show", "--config", path]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("limits.conc")]
    assert "probe daemon" not in line and line.split()[1] == "64"


def test_lists_from_env_are_comma_separated() -> None:
    s = load_settings({}, None, environ={"PROBE_ROUTABLE": "198.18.0.0/15, 127.0.0.0/8"})
    assert s.value("network.routable") == ["198.18.0.0/15", "127.0.0.0/8"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("0x7f.1", "127.0.0.1"),
        ("2130706433:5353", "127.0.0.1:5353"),
        ("[::FFFF:7F00:1]:53", "[::ffff:7f00:1]:53"),
        ("127.0.0.1:53", "127.0.0.1:53"),
    ],
)
def test_a_resolver_is_kept_in_the_standard_spelling(
    tmp_path: Path, given: str, stored: str
) -> None:
    # Every connector reads 0x7f.1 as 127.0.0.1; dnspython, which sends the queries, does not.
    env = {"PROBE_CONFIG": write(tmp_path, "")}
    s = load_settings({"network.resolver": given}, None, environ=env)
    assert s.value("network.resolver") == stored


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[vantage]\nname = "x"\n\n[nework]\nresolver = "1.1.1.1"\n', ":4: [nework]: unknown section"),
        ('[network]\n# a comment\nresolvr = "1.1.1.1"\n', ":3: network.resolvr: unknown key"),
        ('[vantage]\nasn = "many"\n', ":2: vantage.asn: expected an integer"),
        ('[vantage]\ncountry = "Kazakhstan"\n', ":2: vantage.country: expected a two-letter"),
        ('[network]\nresolver = "dns.example"\n', ":2: network.resolver: expected an IP"),
        ('[network]\nrouted = 1\nroutable = ["198.18.0.0/33"]\n', ":2: network.routed: unknown key"),
        ('[network]\nroutable = ["198.18.0.0/33"]\n', ":2: network.routable: not a network"),
        ('[control]\ndoh = ["http://dns.example/q"]\n', ":2: control.doh: expected a https URL"),
        ('[limits]\nretry_delay = -1\n', ":2: limits.retry_delay: must be between"),
        ('[network]\nca_bundle = "/nonexistent/ca.pem"\n', ":2: network.ca_bundle: no readable file"),
        ("[network\n", ":1: "),
    ],
)  # fmt: skip
def test_file_errors_name_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings({}, path, environ={})
    assert str(err.value).startswith(path)
    assert expected in str(err.value)


def test_flag_and_env_errors_name_their_source() -> None:
    with pytest.raises(ConfigError, match=r"^--asn: expected an integer"):
        load_settings({"vantage.asn": "x"}, None, environ={})
    with pytest.raises(ConfigError, match=r"^PROBE_CONCURRENCY: must be at least 1"):
        load_settings({}, None, environ={"PROBE_CONCURRENCY": "0"})


def test_every_key_has_a_distinct_flag_and_env() -> None:
    assert len({k.flag for k in KEYS}) == len(KEYS)
    assert len({k.env for k in KEYS}) == len(KEYS)


def test_config_show_cli_prints_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[vantage]\nname = "home-almaty"\n')
    monkeypatch.setenv("PROBE_COUNTRY", "KZ")
    assert main(["config", "show", "--config", path, "--asn", "9198"]) == 0
    out = capsys.readouterr().out
    assert "home-almaty" in out and f"file:{path}" in out
    assert "env:PROBE_COUNTRY" in out
    lines = [line for line in out.splitlines() if line.startswith("vantage.asn")]
    assert lines and "9198" in lines[0] and "flag" in lines[0]


def test_bad_config_exits_2_on_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[vantage]\nasn = -5\n")
    db = tmp_path / "results.sqlite"
    assert main(["run", "--config", path, "--db", str(db), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: vantage.asn" in err
    assert not db.exists()  # nothing written


def test_the_helper_token_file_is_checked_and_named(tmp_path: Path) -> None:
    good = tmp_path / "token"
    good.write_text("s3cret-Token_1\nignored\n", encoding="utf-8")
    s = load_settings({}, write(tmp_path, f'[control]\nhelper_token_file = "{good}"\n'), {})
    assert s.value("control.helper_token_file") == str(good)
    assert read_token_file(str(good)) == "s3cret-Token_1"
    for text in ("", "\n", "two words\n", "tab\there\n"):
        good.write_text(text, encoding="utf-8")
        config = write(tmp_path, f'[control]\nhelper_token_file = "{good}"\n')
        with pytest.raises(ConfigError, match=rf"helper_token_file.*{good}, line 1"):
            load_settings({}, config, {})
    with pytest.raises(ConfigError, match="PROBE_HELPER_TOKEN_FILE: no readable file"):
        load_settings({}, None, {"PROBE_HELPER_TOKEN_FILE": str(tmp_path / "missing")})


def test_errors_quote_long_values_cut_short(tmp_path: Path) -> None:
    path = write(tmp_path, f'[vantage]\ncountry = "{"k" * 1_000_000}"\n')
    with pytest.raises(ConfigError) as err:
        load_settings({}, path, environ={})
    assert len(str(err.value)) < 300 and "vantage.country" in str(err.value)
    assert str(err.value).endswith("...")


def test_a_config_file_that_is_not_utf8_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "probe.toml"
    path.write_bytes(b'[vantage]\nname = "\xff"\n')
    assert main(["config", "show", "--config", str(path)]) == 2


# ------------------------------------------------------------------ typed sections


def test_each_section_has_a_field_for_every_key_and_the_same_defaults(tmp_path: Path) -> None:
    # The typed sections are what the probe reads; the keys are what flags, files and
    # variables set. A key missing from a section, or a default that differs, fails here.
    import dataclasses

    from probe.config import HELPER_KEYS, Settings, load_helper_settings
    from probe.config.sections import HelperServeSettings

    empty = {"PROBE_CONFIG": write(tmp_path, "")}
    built, typed = load_settings({}, None, environ=empty), Settings()
    for key in KEYS:
        section = getattr(typed, key.section)
        assert key.name in {f.name for f in dataclasses.fields(section)}, key.dotted
    for name in ("vantage", "network", "control", "storage", "limits", "throughput"):
        assert getattr(built, name) == getattr(typed, name), name
    helper = load_helper_settings({}, None, environ=empty).helper
    assert helper == HelperServeSettings()
    assert {k.name for k in HELPER_KEYS} <= {f.name for f in dataclasses.fields(helper)}


def test_the_helper_reads_its_section_its_variables_and_its_flags(tmp_path: Path) -> None:
    from measurements.addresses import parse_networks
    from probe.config import load_helper_settings

    token = tmp_path / "helper.token"
    token.write_text("s3cret\n", encoding="utf-8")
    path = write(
        tmp_path,
        '[network]\nresolver = "127.0.0.1"\n'  # the probe's, not the helper's
        f'[helper]\nlisten = "127.0.0.1:9443"\ntoken_file = "{token}"\nroutable = ["127.0.0.0/8"]\n',
    )
    env = {"PROBE_HELPER_TIMEOUT": "3", "PROBE_HELPER_LISTEN": "127.0.0.1:1", "PROBE_TIMEOUT": "9"}
    got = load_helper_settings({"helper.concurrency": "4"}, path, environ=env)
    h = got.helper
    assert (h.listen, h.timeout, h.concurrency, h.resolver) == ("127.0.0.1:9443", 3.0, 4, None)
    assert h.token == "s3cret" and h.routable == parse_networks(["127.0.0.0/8"])
    assert got.provenance.sources["helper.listen"] == f"file:{path}"
    assert got.provenance.sources["helper.timeout"] == "env:PROBE_HELPER_TIMEOUT"
    assert got.provenance.sources["helper.concurrency"] == "flag"
    assert "s3cret" not in repr(h)  # the token is kept out of every repr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"helper.listen": "127.0.0.1"}, "--listen: expected ADDR:PORT"),
        ({"helper.listen": "127.0.0.1:70000"}, "--listen: expected ADDR:PORT: port 70000 out"),
        ({"helper.throughput_bytes_per_hour": "-1"}, "--throughput-bytes-per-hour: must not"),
        ({"helper.read_timeout": "0"}, "--read-timeout: must be more than 0"),
        ({"helper.per_client_connections": "0"}, "--per-client-connections: must be at least 1"),
    ],
)
def test_bad_helper_settings_are_refused(flags: dict[str, str], message: str) -> None:
    from probe.config import load_helper_settings

    with pytest.raises(ConfigError, match=message):
        load_helper_settings(flags, None, environ={})


def test_a_bad_token_line_names_where_the_setting_came_from(tmp_path: Path) -> None:
    from probe.config import load_helper_settings

    bad = tmp_path / "bad.token"
    bad.write_text("has a space\n", encoding="utf-8")
    path = write(tmp_path, f'[helper]\ntoken_file = "{bad}"\n')
    with pytest.raises(ConfigError, match=rf"^{path}:2: helper.token_file: .*spaces"):
        load_helper_settings({}, path, environ={})
