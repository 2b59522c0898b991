"""What contrib/ ships for running unattended: the systemd units pass `systemd-analyze verify`
and carry the hardening they claim, and the units and the crontab line name commands and
flags the probe has. The container's entrypoint is in tests/test_entrypoint.py."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from probe.cli import build_parser
from tests.prerequisites import missing

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "contrib" / "systemd"
CRON = ROOT / "contrib" / "cron" / "probe"
UNIT_FILES = sorted(p.name for p in UNITS.iterdir())
SERVICES = [name for name in UNIT_FILES if name.endswith(".service")]
# Where the units expect the probe: a virtual environment in /opt (README, "Running
# unattended"); Debian's pip refuses a system-wide install.
INSTALLED = "/opt/blocking-probe/bin/probe"
DB = "/var/lib/blocking-probe/results.sqlite"
FAMILIES = "AF_INET AF_INET6 AF_UNIX AF_NETLINK"

Directives = dict[str, dict[str, list[str]]]


def _directives(path: Path) -> Directives:
    """section -> key -> every value given (a key may repeat, as SystemCallFilter= does)."""
    found: Directives = {}
    section: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"{path.name}: a continued line is harder to read"
        if line.startswith("["):
            section = found.setdefault(line.strip("[]"), {})
        else:
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not KEY=VALUE"
            section.setdefault(key.strip(), []).append(value.strip())
    return found


def _one(path: Path, section: str, key: str) -> str:
    values = _directives(path)[section].get(key, [])
    assert len(values) == 1, f"{path.name}: [{section}] {key}= given {len(values)} times"
    return values[0]


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        missing("systemd-analyze is not installed (Debian's systemd package)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def installed_units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units, in a directory of their own, naming the probe script installed here.

    `systemd-analyze verify` checks that every Exec*= binary exists and is executable, and
    /opt/blocking-probe/bin/probe exists only once the README's install steps are done; the
    copies name the script `pip install` put on PATH instead, which is what they would run.
    """
    probe = shutil.which("probe")
    if probe is None:
        missing("the `probe` script is not on PATH (pip install '.[test]' puts it there)")
    assert probe is not None
    directory = tmp_path_factory.mktemp("units")
    for name in UNIT_FILES:
        text = (UNITS / name).read_text(encoding="utf-8")
        (directory / name).write_text(text.replace(INSTALLED, probe), encoding="utf-8")
    return directory


@pytest.mark.parametrize("name", UNIT_FILES)
def test_systemd_analyze_verify(name: str, installed_units: Path) -> None:
    """No error and no warning about the unit (an unknown key is only a warning: exit 0)."""
    done = subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", str(installed_units / name)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    about_ours = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if str(installed_units) in line or any(unit in line for unit in UNIT_FILES)
    ]
    assert (done.returncode, about_ours) == (0, [])


@pytest.mark.parametrize("name", SERVICES)
def test_exposure_stays_low(name: str, installed_units: Path) -> None:
    """`systemd-analyze security` rates each service at most 2.0 of 10 ("OK"): dropping a
    hardening directive shows here, not only in review."""
    done = subprocess.run(
        [_systemd_analyze(), "security", "--offline=yes", "--threshold=20", "--no-pager",
         str(installed_units / name)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-400:] + done.stderr[-400:]


HARDENING = [
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("NoNewPrivileges", "yes"),
    ("RestrictAddressFamilies", FAMILIES),
    ("DynamicUser", "yes"),
]


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize(("key", "value"), HARDENING)
def test_every_service_is_hardened(name: str, key: str, value: str) -> None:
    assert _one(UNITS / name, "Service", key) == value


UNIT_TABLE = [
    ("probe-daemon.service", "Service", "Type", "notify"),
    ("probe-daemon.service", "Service", "WatchdogSec", "2min"),
    ("probe-daemon.service", "Service", "Restart", "on-failure"),
    ("probe-daemon.service", "Service", "RestartPreventExitStatus", "2 5"),
    ("probe-daemon.service", "Service", "ExecReload", "/bin/kill -HUP $MAINPID"),
    ("probe-daemon.service", "Unit", "StartLimitBurst", "5"),
    ("probe-daemon.service", "Unit", "StartLimitIntervalSec", "10min"),
    ("probe-daemon.service", "Service", "User", "blocking-probe"),
    ("probe-daemon.service", "Service", "StateDirectory", "blocking-probe"),
    ("probe-run.service", "Service", "Type", "oneshot"),
    ("probe-run.service", "Service", "User", "blocking-probe"),
    ("probe-run.service", "Service", "StateDirectory", "blocking-probe"),
    ("probe-run.service", "Service", "SuccessExitStatus", "143"),
    ("probe-run.timer", "Timer", "OnCalendar", "hourly"),
    ("probe-run.timer", "Timer", "RandomizedDelaySec", "30min"),
    ("probe-run.timer", "Timer", "Persistent", "false"),
    ("probe-run.timer", "Timer", "Unit", "probe-run.service"),
    ("probe-run.timer", "Install", "WantedBy", "timers.target"),
    ("probe-helper.service", "Service", "User", "blocking-probe-helper"),
    ("probe-helper.service", "Service", "RestartPreventExitStatus", "2"),
    ("probe-helper.service", "Service", "CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
]


@pytest.mark.parametrize(("name", "section", "key", "value"), UNIT_TABLE)
def test_unit_directives(name: str, section: str, key: str, value: str) -> None:
    assert _one(UNITS / name, section, key) == value


def _command(name: str) -> list[str]:
    argv = shlex.split(_one(UNITS / name, "Service", "ExecStart"))
    assert argv[0] == INSTALLED
    return argv[1:]


@pytest.mark.parametrize("name", ["probe-run.service", "probe-daemon.service"])
def test_the_sweeps_write_the_state_directory(name: str) -> None:
    argv = _command(name)
    assert argv[argv.index("--db") + 1] == DB
    assert argv[argv.index("--config") + 1] == "/etc/blocking-probe/probe.toml"


def _daemon_exists() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "probe", "daemon", "--help"],
        capture_output=True, timeout=60, check=False, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return done.returncode == 0


@pytest.mark.parametrize("name", SERVICES)
def test_exec_start_is_a_probe_command(name: str) -> None:
    """The probe's own parser accepts each unit's command line (nothing is run)."""
    argv = _command(name)
    if argv[0] == "daemon" and not _daemon_exists():
        pytest.skip("`probe daemon --help` fails: the daemon is not in this tree yet")
    args = build_parser().parse_args(argv)
    assert args.handler is not None


def _cron_line() -> list[str]:
    lines = [
        line
        for line in CRON.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(lines) == 1
    return lines[0].split(None, 6)  # five time fields, the user, the command


def test_cron_line_is_an_hourly_jittered_sweep() -> None:
    minute, hour, dom, month, dow, user, command = _cron_line()
    assert (hour, dom, month, dow, user) == ("*", "*", "*", "*", "blocking-probe")
    assert 0 <= int(minute) < 60
    # cron ends the command at a bare % (the rest becomes its standard input).
    assert "%" not in command and "flock" not in command
    subprocess.run(["sh", "-n", "-c", command], check=True, timeout=30)
    jitter, sweep = command.split(" && ")
    assert shlex.split(jitter)[:2] == ["sleep", "$(shuf -i 0-1799 -n 1)"]
    argv = shlex.split(sweep.removesuffix(" >/dev/null"))
    assert argv[0] == INSTALLED
    assert argv[argv.index("--db") + 1] == DB
    assert build_parser().parse_args(argv[1:]).command == "run"


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    return text[start : text.index("\n## ", start + 1)]


def test_readme_shows_the_shipped_cron_line_and_units() -> None:
    section = _readme_section("Running unattended")
    cron = " ".join(_cron_line())
    assert f"\n{cron}\n" in section
    named = {n for n in UNIT_FILES if f"`{n}`" in section}
    assert named == set(UNIT_FILES)


def test_readme_supervisor_codes_are_exit_codes() -> None:
    """Each code of the supervisors' table is a row of the main exit-code table."""
    supervisors = _readme_section("Running unattended").split("### Exit codes for supervisors")[1]
    codes = {line.split("|")[1].strip() for line in supervisors.splitlines() if line[:2] == "| "}
    main = _readme_section("Commands").split("### Exit codes")[1]
    rows = {line.split("|")[1].strip() for line in main.splitlines() if line[:2] == "| "}
    assert codes - {"code"} == {"0", "2", "5", "143"}
    assert codes - {"code"} <= rows
