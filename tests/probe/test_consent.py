"""Informed consent: ``probe run`` refuses (exit 6, the text on stderr, nothing written) until
``probe consent --accept`` or ``vantage.consent``; real ``probe`` processes, each with its own
data directory (XDG_DATA_HOME) and an offline loopback config, so no host is contacted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from probe.config import CONSENT_TEXT, CONSENT_VERSION

ROOT = Path(__file__).resolve().parent.parent.parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh machine: no consent given (tests/conftest.py gives one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBE_")}
    env.update(XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _files(tmp_path: Path, consent: bool = False) -> tuple[Path, Path]:
    """An offline world: the one reference is a closed port on 127.0.0.1, no DoH control."""
    targets = tmp_path / "t.toml"
    targets.write_text(
        '[[service]]\nname = "x"\ncategory = "social"\nurls = ["http://127.0.0.1:9/"]\n'
    )
    config = tmp_path / ("consenting.toml" if consent else "c.toml")
    config.write_text(
        ("[vantage]\nconsent = true\n" if consent else "")
        + '[network]\nroutable = ["127.0.0.0/8"]\n'
        + '[control]\ndoh = []\nreference = ["http://127.0.0.1:9/"]\n'
        + "[limits]\nconnect_timeout = 1\nretries = 0\n"
    )
    return targets, config


def _probe(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "probe", *args],
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _run(
    tmp_path: Path, config: Path, targets: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    db = tmp_path / "db" / "r.sqlite"
    return _probe(
        tmp_path, "run", "--config", str(config), "--targets", str(targets), "--db", str(db),
        "--no-progress", **env,
    )  # fmt: skip


def test_run_refuses_without_consent_and_works_after_accept(tmp_path: Path) -> None:
    targets, config = _files(tmp_path)
    refused = _run(tmp_path, config, targets)
    assert refused.returncode == 6, refused.stderr
    assert CONSENT_TEXT in refused.stderr and "probe consent --accept" in refused.stderr
    assert "Nothing was measured" in refused.stderr and refused.stdout == ""
    assert not (tmp_path / "db").exists() and not (tmp_path / "data").exists()  # nothing written

    shown = _probe(tmp_path, "consent")
    assert shown.returncode == 0 and CONSENT_TEXT in shown.stdout
    assert "consent: not accepted" in shown.stdout

    accepted = _probe(tmp_path, "consent", "--accept")
    assert accepted.returncode == 0, accepted.stderr
    record = tmp_path / "data" / "blocking-probe" / "consent.json"
    data = json.loads(record.read_text())
    assert data["version"] == CONSENT_VERSION and data["accepted_at"].endswith("Z")
    state = json.loads(_probe(tmp_path, "consent", "--json").stdout)
    assert state["accepted"] is True and state["source"] == f"file:{record}"

    done = _run(tmp_path, config, targets)
    assert done.returncode == 0, done.stderr
    assert "offline, 1/1 inputs stored" in done.stdout

    revoked = _probe(tmp_path, "consent", "--revoke")
    assert revoked.returncode == 0 and not record.exists()
    assert _run(tmp_path, config, targets).returncode == 6


def test_the_config_or_its_variable_consents_for_unattended_machines(tmp_path: Path) -> None:
    targets, config = _files(tmp_path, consent=True)
    assert _run(tmp_path, config, targets).returncode == 0
    targets, plain = _files(tmp_path)
    assert _run(tmp_path, plain, targets, PROBE_VANTAGE_CONSENT="true").returncode == 0
    assert not (tmp_path / "data").exists()  # nothing recorded: the config decided
    state = json.loads(_probe(tmp_path, "consent", "--json", "--config", str(config)).stdout)
    assert state["accepted"] is True and state["source"] == f"file:{config}"


def test_an_older_or_unreadable_record_does_not_count(tmp_path: Path) -> None:
    targets, config = _files(tmp_path)
    record = tmp_path / "data" / "blocking-probe" / "consent.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"version": 0, "accepted_at": "2026-01-01T00:00:00Z"}')
    refused = _run(tmp_path, config, targets)
    assert refused.returncode == 6 and "the text has changed since" in refused.stderr
    record.write_text("not json")
    refused = _run(tmp_path, config, targets)
    assert refused.returncode == 6 and "is unreadable" in refused.stderr


@pytest.mark.parametrize("flag", ["--accept", "--revoke"])
def test_accept_and_revoke_exclude_each_other(tmp_path: Path, flag: str) -> None:
    both = _probe(tmp_path, "consent", "--accept", "--revoke")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    assert _probe(tmp_path, "consent", flag).returncode == 0


def test_bad_input_is_exit_2_before_consent_is_asked(tmp_path: Path) -> None:
    _, config = _files(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[[service]]\nname = 1\n")
    done = _run(tmp_path, config, bad)
    assert done.returncode == 2 and "bad.toml" in done.stderr and CONSENT_TEXT not in done.stderr
