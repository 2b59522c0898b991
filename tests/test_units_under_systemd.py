"""The shipped units, started by a real systemd (PID 1 of namespaces of its own, see
tests/servers/systemd_boot.py) with every hardening directive they carry: the sweep and the
daemon measure a loopback world, the daemon's readiness reaches systemd (Type=notify), a
reload and a stop end as the units promise, the timer is scheduled.

The units are installed as README's "Running unattended" says: the probe in
/opt/blocking-probe (here this interpreter and this checkout, bound there), the
config in /etc/blocking-probe, and a drop-in that names the test's target list, as an
operator's `systemctl edit` would. Everything written stays in the namespace.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from probe.collector.client import Uploader
from tests.collector.test_collector import counts, new_token, probe_db
from tests.servers.systemd_boot import BootedSystemd, booted_systemd
from tests.servers.world import LOOPBACK, World, free_port, running_world

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "contrib" / "systemd"
PREFIX = "/opt/blocking-probe"
ETC = "/etc/blocking-probe"
DB = "/var/lib/blocking-probe/results.sqlite"
NAMES = ["ref.test", "ok.test"]
TOKEN = "units-under-systemd-token"
HELPER_PORT, REPLAY_PORT = free_port(), free_port()
DAEMON = """
[daemon]
jitter = 0
network_poll = 1
stop_deadline = 2

[[daemon.group]]
name = "all"
categories = ["messaging"]
every = "3s"
"""


def _python_shim() -> str:
    """``/opt/blocking-probe/bin/probe``: this interpreter as a venv's would run it. The
    interpreter lives where ProtectHome= may hide it (/root), so its prefix is bound under
    /opt; its libpython is found by LD_LIBRARY_PATH, as the binary's RUNPATH names the old
    place. ``exec`` keeps the PID systemd started (NotifyAccess=main)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    # The checkout under test first: the installed copy may be another (an older install).
    paths = [f"{PREFIX}/src"]
    if sys.prefix != sys.base_prefix:
        paths.append(f"{PREFIX}/env/lib/{version}/site-packages")
    lines = ["#!/bin/sh", f"export LD_LIBRARY_PATH={PREFIX}/base/lib",
             f"export PYTHONPATH={':'.join(paths)}"]  # fmt: skip
    lines.append(f'exec {PREFIX}/base/bin/{version} -m probe "$@"')
    return "\n".join(lines) + "\n"


def _install(b: BootedSystemd, w: World, config: str) -> None:
    b.run("mkdir", "-p", f"{PREFIX}/base", f"{PREFIX}/env", f"{PREFIX}/bin", f"{PREFIX}/src")
    b.run("mount", "--bind", "-o", "ro", b.exported(sys.base_prefix), f"{PREFIX}/base")
    b.run("mount", "--bind", "-o", "ro", b.exported(str(ROOT)), f"{PREFIX}/src")
    if sys.prefix != sys.base_prefix:
        b.run("mount", "--bind", "-o", "ro", b.exported(sys.prefix), f"{PREFIX}/env")
    b.write(f"{PREFIX}/bin/probe", _python_shim(), mode="0755")
    b.write(f"{ETC}/ca.pem", Path(w.ca_bundle).read_text(encoding="utf-8"))
    b.write(f"{ETC}/probe.toml", config)
    url = f"https://ok.test:{w.web.https_port}/"
    b.write(f"{ETC}/targets.toml",
            f'[[service]]\nname = "chat"\ncategory = "messaging"\nurls = ["{url}"]\n')  # fmt: skip
    for unit in sorted(UNITS.iterdir()):
        b.write(f"/etc/systemd/system/{unit.name}", unit.read_text(encoding="utf-8"))
    for name in ("probe-run", "probe-daemon"):
        start = _exec_start(name)
        drop_in = f"[Service]\nExecStart=\nExecStart={start} --targets {ETC}/targets.toml\n"
        b.write(f"/etc/systemd/system/{name}.service.d/targets.conf", drop_in)
    b.systemctl("daemon-reload")


def _exec_start(name: str) -> str:
    """The ExecStart= command line of ``name``.service as shipped."""
    return next(
        line.split("=", 1)[1]
        for line in (UNITS / f"{name}.service").read_text(encoding="utf-8").splitlines()
        if line.startswith("ExecStart=")
    )


@pytest.fixture(scope="module")
def booted(
    ca: trustme.CA, ca_bundle: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BootedSystemd, World]]:
    # The checkout and the interpreter may be where the namespace has its own /tmp.
    exports = [str(ROOT), sys.base_prefix, sys.prefix]
    with running_world(ca, ca_bundle, NAMES) as w, booted_systemd(exports) as b:
        tmp = tmp_path_factory.mktemp("units")
        path = w.write_config(tmp / "probe.toml", f"https://ref.test:{w.web.https_port}/")
        config = path.read_text(encoding="utf-8").replace(w.ca_bundle, f"{ETC}/ca.pem")
        _install(b, w, config + DAEMON + _helper_section(w))
        b.write(f"{ETC}/helper.token", TOKEN + "\n", mode="0600")  # root's alone
        yield b, w


def _helper_section(w: World) -> str:
    return (
        f'[helper]\nlisten = "{LOOPBACK}:{HELPER_PORT}"\n'
        f'replay_listen = "{LOOPBACK}:{REPLAY_PORT}"\n'
        f'resolver = "{w.resolver.address}"\nca_bundle = "{ETC}/ca.pem"\n'
        'routable = ["127.0.0.0/8"]\n'
    )


def _runs(b: BootedSystemd) -> list[dict[str, object]]:
    """The runs and their measurements' verdicts, read as root inside the namespace."""
    script = (
        "import json, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "runs = [{'run_id': r, 'status': s, 'verdicts': [v for (v,) in db.execute("
        "'SELECT verdict FROM measurements WHERE run_id = ?', (r,))]}"
        " for r, s in db.execute('SELECT run_id, status FROM runs ORDER BY started_at')]\n"
        "print(json.dumps(runs))\n"
    )
    done = b.run(sys.executable, "-c", script, DB, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else []


def _no_sandbox_refusals(b: BootedSystemd, unit: str) -> None:
    journal = b.journal(unit)
    refused = [
        line for line in journal.splitlines()
        if re.search(r"Operation not permitted|Permission denied|Read-only file system", line)
    ]  # fmt: skip
    assert not refused, f"{unit}: the sandbox refused something:\n" + "\n".join(refused)
    assert "Traceback" not in journal, journal


def test_probe_run_service_sweeps_into_its_state_directory(
    booted: tuple[BootedSystemd, World],
) -> None:
    b, _ = booted
    b.systemctl("start", "probe-run.service")  # Type=oneshot: returns when the sweep ends
    shown = b.show("probe-run.service", "Result", "ExecMainStatus", "User")
    assert shown["Result"] == "success", (shown, b.journal("probe-run.service"))
    assert shown["ExecMainStatus"] == "0"
    runs = _runs(b)
    assert runs and runs[-1]["status"] == "completed", runs
    assert runs[-1]["verdicts"] == ["accessible"], runs
    # The dynamic user's (systemd allocates those from 61184-65519), StateDirectoryMode's.
    uid, mode = b.run("stat", "-c", "%u %a", "/var/lib/private/blocking-probe").stdout.split()
    assert 61184 <= int(uid) <= 65519 and mode == "750", (uid, mode)
    _no_sandbox_refusals(b, "probe-run.service")


def test_probe_run_timer_is_scheduled(booted: tuple[BootedSystemd, World]) -> None:
    b, _ = booted
    b.systemctl("start", "probe-run.timer")
    try:
        shown = b.show("probe-run.timer", "ActiveState", "NextElapseUSecRealtime")
        assert shown["ActiveState"] == "active", shown
        assert shown["NextElapseUSecRealtime"] not in ("", "0", "n/a"), shown
    finally:
        b.systemctl("stop", "probe-run.timer")


def _until_daemon_run(
    b: BootedSystemd, before: int, timeout: float = 90.0
) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _runs(b)
        if sum(1 for r in runs if r["status"] == "completed") > before:
            return runs
        state = b.show("probe-daemon.service", "ActiveState")["ActiveState"]
        assert state == "active", (state, b.journal("probe-daemon.service"))
        time.sleep(0.5)
    pytest.fail("the daemon completed no sweep:\n" + b.journal("probe-daemon.service"))


def test_probe_daemon_service_is_ready_sweeps_reloads_and_stops(
    booted: tuple[BootedSystemd, World],
) -> None:
    b, _ = booted
    before = sum(1 for r in _runs(b) if r["status"] == "completed")
    # Type=notify: start returns only once the daemon said READY=1 (or failed).
    b.systemctl("start", "probe-daemon.service")
    try:
        shown = b.show("probe-daemon.service", "ActiveState", "SubState", "WatchdogUSec",
                       "StatusText")  # fmt: skip
        assert (shown["ActiveState"], shown["SubState"]) == ("active", "running"), shown
        assert shown["WatchdogUSec"] == "2min", shown
        runs = _until_daemon_run(b, before)
        assert runs[-1]["verdicts"] == ["accessible"], runs
        b.systemctl("reload", "probe-daemon.service")  # SIGHUP: reload, keep running
        _until_daemon_run(b, sum(1 for r in runs if r["status"] == "completed"))
    finally:
        b.systemctl("stop", "probe-daemon.service")
    shown = b.show("probe-daemon.service", "Result", "ExecMainStatus", "ActiveState")
    assert shown == {"Result": "success", "ExecMainStatus": "0", "ActiveState": "inactive"}, (
        shown, b.journal("probe-daemon.service"),
    )  # fmt: skip
    _no_sandbox_refusals(b, "probe-daemon.service")
    assert "probe daemon: reloaded" in b.journal("probe-daemon.service")


def test_probe_helper_service_answers_with_its_credential(
    booted: tuple[BootedSystemd, World],
) -> None:
    b, _ = booted
    b.systemctl("start", "probe-helper.service")
    try:
        health: dict[str, object] = {}
        deadline = time.monotonic() + 60
        while not health and time.monotonic() < deadline:
            request = urllib.request.Request(
                f"http://{LOOPBACK}:{HELPER_PORT}/v1/health",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(request, timeout=5) as answer:
                    health = json.loads(answer.read())
            if not health:
                state = b.show("probe-helper.service", "ActiveState")["ActiveState"]
                assert state in ("active", "activating"), b.journal("probe-helper.service")
                time.sleep(0.2)
        assert health.get("ok") is True, (health, b.journal("probe-helper.service"))
        assert health.get("replay_port") == REPLAY_PORT, health  # its TLS listener too
    finally:
        b.systemctl("stop", "probe-helper.service")
    shown = b.show("probe-helper.service", "Result")
    assert shown["Result"] == "success", (shown, b.journal("probe-helper.service"))
    _no_sandbox_refusals(b, "probe-helper.service")


def test_probe_collector_service_stores_an_upload(
    booted: tuple[BootedSystemd, World], postgres_url: str, tmp_path: Path
) -> None:
    b, _ = booted
    port = free_port()
    start = _exec_start("probe-collector")
    # The test's PostgreSQL and port instead of the unit's 127.0.0.1:5432 and 8090; the
    # password file is the credential the unit loads (the test server trusts 127.0.0.1).
    assert "--db postgresql+psycopg://collector@127.0.0.1:5432/probe" in start, start
    start = re.sub(r"--db \S+", f"--db {postgres_url}", start)
    start = start.replace("--listen 127.0.0.1:8090", f"--listen {LOOPBACK}:{port}")
    b.write("/etc/systemd/system/probe-collector.service.d/test.conf",
            f"[Service]\nExecStart=\nExecStart={start}\n")  # fmt: skip
    b.write(f"{ETC}/collector.pgpass", "127.0.0.1:*:*:collector:unused\n", mode="0600")
    b.systemctl("daemon-reload")
    b.systemctl("start", "probe-collector.service")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/v1/health", timeout=5):
                    break
            state = b.show("probe-collector.service", "ActiveState")["ActiveState"]
            assert state in ("active", "activating"), b.journal("probe-collector.service")
            time.sleep(0.2)
        token = new_token(postgres_url, "probe-under-systemd")
        db = probe_db(tmp_path / "p.sqlite", 12)
        uploader = Uploader(f"http://{LOOPBACK}:{port}", token, batch_size=5)
        try:
            sent = uploader.send(db)
        except Exception as exc:  # the collector's side of it
            raise AssertionError(b.journal("probe-collector.service")) from exc
        finally:
            uploader.close()
            db.close()
        assert (sent.sent, sent.stored, sent.pending) == (12, 12, 0), sent
        assert counts(postgres_url) == (12, 12, 12)
    finally:
        b.systemctl("stop", "probe-collector.service")
    shown = b.show("probe-collector.service", "Result")
    assert shown["Result"] == "success", (shown, b.journal("probe-collector.service"))
    _no_sandbox_refusals(b, "probe-collector.service")
