"""The daemon notices the default route going away at once: an outage is data from that
moment, before any sweep can tell (issue 10, "Outages are data").

The daemon and a loopback world run in a network namespace of the test's own (prefix
``pd-``), whose only way out is a veth pair in 198.18.0.0/15 with both ends inside it:
deleting its default route is a real loss of route, seen by the daemon in its own
/proc/net/route. Needs root and iproute2 (CI has both: a missing one fails under CI=true).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.prerequisites import missing
from tests.test_daemon_end_to_end import SWEEPS, TWO_GROUPS, rows, until

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["ref.test", "ok.test"]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    """A namespace with lo and a default route that leads nowhere outside; deleted after."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        missing("needs root and iproute2 (ip netns) to take a namespace's route away")
    ns = f"pd-{os.getpid()}"
    _ip("netns", "add", ns)
    try:
        _ip("-n", ns, "link", "set", "lo", "up")
        # Both ends of the pair stay inside: what the route sends ends at the other end.
        _ip("-n", ns, "link", "add", "pd-v0", "type", "veth", "peer", "name", "pd-v1")
        for end, address in (("pd-v0", "198.18.250.1/30"), ("pd-v1", "198.18.250.2/30")):
            _ip("-n", ns, "addr", "add", address, "dev", end)
            _ip("-n", ns, "link", "set", end, "up")
        _ip("-n", ns, "route", "add", "default", "via", "198.18.250.2", "dev", "pd-v0")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@contextlib.contextmanager
def started(args: list[str], **kwargs: object) -> Iterator[subprocess.Popen[str]]:
    """A process of the test's, ended by its PID."""
    proc = subprocess.Popen(args, text=True, cwd=ROOT, **kwargs)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def test_losing_the_default_route_opens_an_outage_at_once(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    db, log = tmp_path / "r.sqlite", tmp_path / "daemon.log"
    with namespace() as ns:
        run = ["ip", "netns", "exec", ns, sys.executable, "-m"]
        world_args = [*run, "tests.servers.world_process", str(tmp_path), *NAMES]
        with started(world_args, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as world:
            assert world.stdout is not None
            info = json.loads(world.stdout.readline())
            config = Path(info["config"])
            hourly = TWO_GROUPS.replace('"2s"', '"1h"').replace('"6s"', '"1h"')
            config.write_text(config.read_text(encoding="utf-8") + hourly, encoding="utf-8")
            targets = tmp_path / "targets.toml"
            url = f"https://ok.test:{info['https_port']}/"
            targets.write_text(
                f'[[service]]\nname = "chat"\ncategory = "messaging"\nurls = ["{url}"]\n'
                f'[[service]]\nname = "feed"\ncategory = "social"\nurls = ["{url}"]\n',
                encoding="utf-8",
            )
            daemon_args = [*run, "probe", "daemon", "--config", str(config), "--targets",
                           str(targets), "--db", str(db)]  # fmt: skip
            with log.open("w") as err, started(daemon_args, stderr=err) as daemon:
                completed = lambda: [r for r in rows(db, SWEEPS) if r[3] == "completed"]  # noqa: E731
                until(lambda: len(completed()) >= 2, timeout=120)
                first_done = max(str(r[2]) for r in completed())
                _ip("-n", ns, "route", "del", "default")
                outages = "SELECT started_at, ended_at, detected_by FROM outages"
                until(lambda: rows(db, outages), timeout=60)
                # The route's loss also prompts a sweep; here the reference host is on the
                # namespace's own loopback, so that sweep reaches it and ends the outage.
                until(lambda: rows(db, outages)[0][1] is not None, timeout=120)
                daemon.send_signal(signal.SIGTERM)
                assert daemon.wait(timeout=30) == 0, log.read_text()
    ((began, ended, by),) = rows(db, outages)
    assert by == "route", log.read_text()
    assert str(began) > first_done and str(ended) > str(began)
    text = log.read_text()
    assert "no default route: an outage began" in text and "the network changed" in text
