"""A real systemd, booted as PID 1 of namespaces of its own, to start the shipped units in.

Nothing of it may reach the host: it gets its own PID, mount, UTS, IPC and cgroup namespaces
(the network is the host's, so a unit reaches the tests' servers on 127.0.0.1), rooted in a
cgroup of its own (``probe-test-<pid>`` in the host's cgroup2 hierarchy, where it makes its
slices; removed at the end; it runs in unified mode and touches no v1 hierarchy), and before
systemd starts, the places it writes are made its own: tmpfs on /run, /tmp, /var/tmp,
/var/lib, /var/log and /var/cache (systemd-tmpfiles empties /tmp at boot: on the host's /tmp
that would delete every other process's files), copy-on-write overlays on /etc and /opt (a
file written or deleted there stays in the namespace), /sys read-only. It boots into an
empty target, with every unit that touches the machine as a whole masked (sysctl, udev,
modules, binfmt, the clock, the network's own services, logins) and the host's enabled units
removed from its /etc, so it starts only the units a test asks for and what they need.

``unshare --kill-child`` ties systemd's life to the unshare process the fixture started: on
any way out, killing that one PID ends the namespace and everything in it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.prerequisites import missing

SYSTEMD = Path("/lib/systemd/systemd")
# What the empty target boots into; a unit under test pulls in what it needs.
TARGET = "probe-test.target"
PRIVATE_TMPFS = ("/run", "/tmp", "/var/tmp", "/var/lib", "/var/log", "/var/cache")
OVERLAID = ("/etc", "/opt")
# Units that change the machine rather than the namespace, or wait for hardware/logins.
MASKED = (
    "systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-clean.timer", "systemd-tmpfiles-clean.service", "systemd-sysctl.service",
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service", "systemd-udev-settle.service",
    "systemd-modules-load.service", "kmod-static-nodes.service", "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount", "systemd-firstboot.service",
    "systemd-machine-id-commit.service", "systemd-sysusers.service", "systemd-repart.service",
    "systemd-random-seed.service", "systemd-journal-flush.service",
    "systemd-update-utmp.service", "systemd-pcrphase-sysinit.service",
    "systemd-pcrphase.service", "systemd-remount-fs.service", "systemd-hwdb-update.service",
    "systemd-timesyncd.service", "systemd-networkd.service", "systemd-networkd.socket",
    "systemd-networkd-wait-online.service", "systemd-resolved.service", "networking.service",
    "ifupdown-wait-online.service", "NetworkManager.service",
    "NetworkManager-wait-online.service", "systemd-logind.service", "getty.target",
    "console-getty.service", "dbus.socket", "dbus.service", "cryptsetup.target",
    "veritysetup.target", "integritysetup.target", "dev-hugepages.mount", "dev-mqueue.mount",
    "sys-fs-fuse-connections.mount", "sys-kernel-config.mount", "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount", "systemd-ask-password-console.path",
    "systemd-ask-password-wall.path",
)  # fmt: skip
BOOT_SECONDS = 60.0
# The host's cgroup2 hierarchy: on its own at /sys/fs/cgroup, or beside v1 ones (hybrid).
HIERARCHIES = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


EXPORTS = "/run/probe-test-host"  # where the host's paths a test asked for are seen


def _boot_script(exports: Sequence[str]) -> str:
    """What runs as the namespace's first process, then becomes systemd (exec). The host
    paths in ``exports`` stay visible (read-only) at EXPORTS/<n>: /tmp, say, is hidden."""
    first, *rest = PRIVATE_TMPFS  # /run first: EXPORTS is in it
    lines = [
        "set -eu",
        "mount --make-rprivate /",
        f"mount -t tmpfs -o mode=0755 probe-test {first}",
    ]
    for n, path in enumerate(exports):
        lines += [f"mkdir -p {EXPORTS}/{n}",
                  f"mount --bind -o ro {shlex.quote(path)} {EXPORTS}/{n}"]  # fmt: skip
    lines += [f"mount -t tmpfs -o mode=0755 probe-test {d}" for d in rest]
    lines += ["chmod 1777 /tmp /var/tmp", "mkdir -p /var/lib/systemd /var/log/journal"]
    for d in OVERLAID:
        base = f"/run/probe-test-overlay{d}"
        lines += [
            f"mkdir -p {base}/upper {base}/work",
            f"mount -t overlay probe-test -o lowerdir={d},upperdir={base}/upper,"
            f"workdir={base}/work {d}",
        ]
    lines += [
        "mount -o bind /sys /sys",
        "mount -o remount,bind,ro /sys",
        # Fresh cgroup file systems, mounted inside the cgroup namespace: their root is the
        # test's cgroup, so systemd's slices go there and it never sees the host's processes.
        # cgroup2 alone, so systemd runs in unified mode and mounts no v1 hierarchy (whose
        # roots would be the host's).
        "mount -t cgroup2 probe-test /sys/fs/cgroup",
        # The host's enabled units are not this machine's (whiteouts in the overlay).
        "rm -rf /etc/systemd/system/*",
        "mkdir -p /run/systemd/system",
        *(f"ln -s /dev/null /run/systemd/system/{unit}" for unit in MASKED),
        f"printf '[Unit]\\nDescription=units under test\\n' > /run/systemd/system/{TARGET}",
        # systemd expects shared propagation (it sets up a unit's credentials in a child
        # namespace and moves them back). The peers are this namespace's copies: unshare
        # made every mount private first, so nothing propagates to the host.
        "mount --make-rshared /",
        "export container=probe-test",
        f"exec {SYSTEMD} --system --unit={TARGET} --log-target=journal-or-kmsg",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class BootedSystemd:
    """A systemd running as PID 1 of its own namespaces; ``pid`` is its PID on the host."""

    pid: int
    unshare: subprocess.Popen[bytes]
    exports: tuple[str, ...] = ()

    def exported(self, path: str) -> str:
        """Where the host's ``path`` (one of the exports) is seen inside."""
        return f"{EXPORTS}/{self.exports.index(path)}"

    def run(
        self, *argv: str, check: bool = True, timeout: float = 120.0, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespaces (as root), returning its output."""
        cmd = ["nsenter", "-t", str(self.pid), "-m", "-p", "-u", "-i", "--", *argv]
        done = subprocess.run(
            cmd, capture_output=True, timeout=timeout, check=False,
            input=input.decode() if input else None, text=True,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(
                f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        """Write a file inside the namespace (its /etc and /opt are overlays of the host's)."""
        self.run("sh", "-c", f"mkdir -p {shlex.quote(str(Path(path).parent))} && "
                 f"cat > {shlex.quote(path)} && chmod {mode} {shlex.quote(path)}",
                 input=text.encode())  # fmt: skip

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``systemctl ARGS`` of this systemd."""
        return self.run("systemctl", "--no-pager", *args, check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """Properties of ``unit`` (``systemctl show -p``)."""
        out = self.systemctl("show", unit, *(f"-p{p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> str:
        """What ``unit`` wrote to the journal."""
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit, check=False).stdout


def _systemd_pid(unshare: subprocess.Popen[bytes], deadline: float) -> int:
    """The PID (on the host) of unshare's child, which execs systemd."""
    children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children")
    while time.monotonic() < deadline:
        if unshare.poll() is not None:
            raise AssertionError(f"unshare exited {unshare.returncode} before systemd started")
        with contextlib.suppress(OSError):
            pids = children.read_text().split()
            if pids and Path(f"/proc/{pids[0]}/exe").resolve() == SYSTEMD.resolve():
                return int(pids[0])
        time.sleep(0.1)
    raise AssertionError("systemd did not start within the deadline")


def _prerequisites() -> None:
    if sys.platform != "linux" or not SYSTEMD.exists():
        missing(f"{SYSTEMD} is not installed (Debian's systemd package)")
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed (util-linux)")
    if os.geteuid() != 0:
        missing("booting systemd in namespaces needs root")


def _test_cgroups(name: str) -> list[Path]:
    """The test's cgroup in the host's cgroup2 hierarchy (systemd needs one)."""
    for hierarchy in HIERARCHIES:
        if (hierarchy / "cgroup.controllers").exists():  # a cgroup2 file system
            (hierarchy / name).mkdir()
            return [hierarchy / name]
    missing(f"no cgroup2 hierarchy to boot systemd in ({', '.join(map(str, HIERARCHIES))})")
    return []


def _remove_cgroups(cgroups: list[Path]) -> None:
    """rmdir each test cgroup, children first (a cgroup goes once its processes have)."""
    deadline = time.monotonic() + 30
    for top in cgroups:
        while top.exists() and time.monotonic() < deadline:
            for path in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    path.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
            if top.exists():
                time.sleep(0.1)


@contextlib.contextmanager
def booted_systemd(exports: Sequence[str] = ()) -> Iterator[BootedSystemd]:
    """Boot systemd in namespaces of its own; wait until it runs; end it on exit. The host
    paths in ``exports`` are seen inside at ``exported(path)``."""
    _prerequisites()
    cgroups = _test_cgroups(f"probe-test-{os.getpid()}")
    # The shell joins the test's cgroups, then becomes unshare: the cgroup namespace is
    # rooted where it stands.
    join = "".join(f"echo $$ > {c}/cgroup.procs; " for c in cgroups)
    script = _boot_script(exports)
    unshare = subprocess.Popen(
        ["sh", "-c", join + 'exec "$@"', "sh", "unshare", "--pid", "--fork", "--kill-child",
         "--mount", "--uts", "--ipc", "--cgroup", "--mount-proc", "sh", "-c", script],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + BOOT_SECONDS
        booted = BootedSystemd(_systemd_pid(unshare, deadline), unshare, tuple(exports))
        state = ""
        while time.monotonic() < deadline:
            state = booted.run("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"systemd did not finish booting: {state!r}")
        yield booted
    finally:
        unshare.kill()  # --kill-child: its child, systemd, and so the namespace, go too
        unshare.wait(timeout=30)
        _remove_cgroups(cgroups)
