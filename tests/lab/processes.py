"""Commands and processes of the lab: every one bounded, every long-lived one known by PID.

The lab's servers are started inside namespaces with ``ip netns exec`` (which execs the
command, so the PID recorded is the server's own) and stopped by that PID only, after
checking that the PID still runs the command the lab started (never a reused PID, never a
process found by name).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.lab.state import Paths, State

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("ip", "iptables", "tc")
# Real filtering software the scenarios run (tests.lab.squid): Debian's squid package.
SOFTWARE = ("squid",)
_COMMAND_TIMEOUT = 20.0  # seconds for any one ip/iptables/tc command
_READY_TIMEOUT = 20.0  # seconds for a server process to bind its listeners
_STOP_TIMEOUT = 3.0  # seconds between SIGTERM and SIGKILL


class LabError(RuntimeError):
    """The lab could not be built or does not behave as built: not the probe's fault."""


def missing_prerequisites() -> list[str]:
    """What this machine lacks to run the lab (empty when it can)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces and iptables need it)")
    missing += [f"the {tool!r} command" for tool in TOOLS if shutil.which(tool) is None]
    missing += [
        f"the {tool!r} command (Debian's {tool} package)"
        for tool in SOFTWARE
        if shutil.which(tool) is None
    ]
    if not Path("/proc/self/ns/net").exists():
        missing.append("network namespaces (/proc/self/ns/net)")
    return missing


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = _COMMAND_TIMEOUT,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a bound; a failure (when checked) is a LabError naming it."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(argv)}: no answer within {timeout:.0f} s") from None
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def netns_exec(ns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside a namespace."""
    return ["ip", "netns", "exec", ns, *argv]


def python_env() -> dict[str, str]:
    """The environment for the lab's Python processes: this repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # An environment proxy must not be the path anything in the lab takes.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(var, None)
    return env


def probe_command() -> list[str]:
    """The installed ``probe`` console script (beside this Python), else ``python -m probe``."""
    script = Path(sys.executable).parent / "probe"
    return [str(script)] if script.exists() else [sys.executable, "-m", "probe"]


def helper_available() -> bool:
    """Whether this probe has the control helper (``probe helper serve``)."""
    done = subprocess.run(
        [*probe_command(), "helper", "serve", "--help"],
        capture_output=True,
        timeout=30,
        check=False,
        env=python_env(),
        cwd=REPO,
    )
    return done.returncode == 0


def alive(pid: int, marker: str) -> bool:
    """True while ``pid`` runs a command line containing ``marker`` (not a reused PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return marker in cmdline and status != "Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop(pid: int, marker: str) -> None:
    """SIGTERM, then SIGKILL after a bound: only if ``pid`` is still the lab's process."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive(pid, marker):
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while time.monotonic() < deadline and alive(pid, marker):
            _reap(pid)
            time.sleep(0.05)
    _reap(pid)


def start(
    paths: Paths, state: State, role: str, ns: str, argv: list[str], marker: str
) -> subprocess.Popen[bytes]:
    """Start a long-running process in a namespace; record its PID before anything else."""
    paths.ready(role).unlink(missing_ok=True)
    log = paths.log(role).open("ab")
    try:
        proc = subprocess.Popen(
            netns_exec(ns, argv),
            cwd=REPO,
            env=python_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C meant for pytest must not tear servers down
        )
    finally:
        log.close()
    # `ip netns exec` execs the command: this PID is the server's own.
    state.processes[role] = {"pid": proc.pid, "marker": marker}
    state.save(paths)
    return proc


def wait_ready(
    paths: Paths, role: str, proc: subprocess.Popen[bytes], line: str | None = None
) -> None:
    """Until the process says it listens (a ready file, or a line in its log); bounded."""
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if line is None and paths.ready(role).exists():
            return
        if line is not None and line in paths.log(role).read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = paths.log(role).read_text(errors="replace")[-2000:]
    raise LabError(f"the {role} server did not start within {_READY_TIMEOUT:.0f} s:\n{tail}")


def run_python(
    ns: str, module: str, args: Sequence[str] = (), *, stdin: str = "", timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``python -m module`` inside a namespace, bounded."""
    argv = netns_exec(ns, [sys.executable, "-m", module, *args])
    try:
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout,
            env=python_env(), cwd=REPO, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise LabError(f"{module} in {ns}: no answer within {timeout:.0f} s") from None
