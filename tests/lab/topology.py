"""Bring the lab's namespaces, links, chains and servers up, reset them, and tear them down.

    lab = up()          # idempotent: tears down whatever a crashed run left, then builds
    lab.reset()         # no censor: flush the lab's chains and qdiscs, empty the policies
    down()              # idempotent: kills the lab's processes by PID, deletes pl-* only

Everything the lab creates carries the ``pl-`` prefix (namespaces, interfaces, chains) or
lives in its state directory, and ``down`` deletes exactly that: the root namespace's
interfaces, routes and iptables rules are never touched. Every command and every wait is
bounded. Run ``python -m tests.lab.topology up|down|status`` to drive it by hand (as root).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.lab import plan, policy, processes, squid
from tests.lab.processes import LabError, missing_prerequisites, netns_exec, run
from tests.lab.state import Paths, State, new_ca

__all__ = ["Lab", "LabError", "attach", "down", "lab_namespaces", "missing_prerequisites", "up"]

# --- teardown -------------------------------------------------------------------------


def lab_namespaces() -> list[str]:
    """The namespaces that exist now with the lab's prefix."""
    done = run(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(plan.PREFIX)]


def down(paths: Paths | None = None) -> None:
    """Remove everything the lab made; safe to call any number of times, and after a crash."""
    paths = paths or Paths()
    state = State.load(paths)
    if state is not None:
        for info in state.processes.values():
            processes.stop(int(info["pid"]), str(info["marker"]))
    for ns in lab_namespaces():
        run(["ip", "netns", "delete", ns], check=False)
    # Only if a crashed build left one behind: the lab never creates links in the root.
    links = run(["ip", "-o", "link", "show"], check=False).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(plan.PREFIX):
            run(["ip", "link", "delete", name], check=False)
    for ns in plan.NAMESPACES:
        shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
    with contextlib.suppress(OSError):  # only when empty: another user's entries stay
        Path("/etc/netns").rmdir()
    shutil.rmtree(paths.root, ignore_errors=True)


# --- bring-up -------------------------------------------------------------------------


def _build_network() -> None:
    for ns in plan.NAMESPACES:
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # Written from inside the namespace: /proc/sys/net is the opener's namespace's.
        sysctls = ["ipv6/conf/all/disable_ipv6", "ipv6/conf/default/disable_ipv6"]
        if ns in plan.FORWARDING:
            sysctls.append("ipv4/ip_forward")
        script = "; ".join(f"echo 1 > /proc/sys/net/{key}" for key in sysctls)
        run(netns_exec(ns, ["sh", "-c", f"set -e; {script}"]))
        # `ip netns exec` bind-mounts this over /etc/resolv.conf: a lookup through the
        # system resolver inside the lab asks the lab (the ISP's resolver, or the public one).
        resolver = plan.ISP_RESOLVER if ns == plan.VANTAGE else plan.PUBLIC_DNS
        etc = Path("/etc/netns") / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {resolver}\n", encoding="utf-8")
    for link in plan.LINKS:
        # Created inside the namespaces: the root namespace never sees these interfaces.
        veth = f"link add {link.dev_a} type veth peer name {link.dev_b} netns {link.ns_b}"
        run(["ip", "-n", link.ns_a, *veth.split()])
        for ns, dev, addr in (
            (link.ns_a, link.dev_a, link.addr_a),
            (link.ns_b, link.dev_b, link.addr_b),
        ):
            run(["ip", "-n", ns, "addr", "add", addr, "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
    for ns, dev in plan.WIRE_DEVICES:
        run(["ip", "-n", ns, "link", "set", dev, "gso_max_segs", "1"])
    for ip in plan.HOST_IPS:
        run(["ip", "-n", plan.NET, "addr", "add", f"{ip}/32", "dev", "lo"])
    for ns, routes in plan.ROUTES.items():
        for route in routes:
            run(["ip", "-n", ns, "route", "add", *route.split()])
    for ns, chains in plan.CHAINS.items():
        for table, chain, hook in chains:
            run(netns_exec(ns, ["iptables", "-w", "5", "-t", table, "-N", chain]))
            builtin, *match = hook.split()
            hook_rule = ["-A", builtin, *match, "-j", chain]
            run(netns_exec(ns, ["iptables", "-w", "5", "-t", table, *hook_rule]))
    for ns, hooks in plan.REPLAY_HOOKS.items():
        for table, chain, hook in hooks:
            builtin, *match = hook.split()
            run(netns_exec(ns, ["iptables", "-w", "5", "-t", table, "-A", builtin, *match,
                                "-j", chain]))  # fmt: skip


class Lab:
    """A built lab: run things in it, reset it, apply a scenario's censor to it."""

    def __init__(self, paths: Paths, state: State) -> None:
        self.paths = paths
        self.state = state

    @property
    def ca_bundle(self) -> str:
        """The lab root's PEM: the probe's and the helper's trust anchors."""
        return str(self.paths.ca_cert)

    @property
    def helper(self) -> bool:
        """Whether the control helper runs in the control namespace."""
        return self.state.helper

    def iptables(self, ns: str, table: str, *args: str) -> None:
        """One iptables command inside a namespace."""
        run(netns_exec(ns, ["iptables", "-w", "5", "-t", table, *args]))

    def tc(self, ns: str, command: str, *, check: bool = True) -> None:
        """One tc command inside a namespace."""
        run(["tc", "-n", ns, *command.split()], check=check)

    def python(
        self, ns: str, module: str, *, stdin: str = "", timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """``python -m module`` inside a namespace, bounded."""
        return processes.run_python(ns, module, stdin=stdin, timeout=timeout)

    def set_uplink(self, up: bool) -> None:
        """Bring the vantage's line up or down (at the ISP's end, as a cut line looks)."""
        ns, dev = plan.UPLINK
        run(["ip", "-n", ns, "link", "set", dev, "up" if up else "down"])
        if not up:
            return
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            shown = run(["ip", "-n", plan.VANTAGE, "-o", "link", "show", "pl-van0"]).stdout
            if "LOWER_UP" in shown:
                return
            time.sleep(0.05)
        raise LabError("the vantage's line did not come back up within 5 s")

    def reset(self) -> None:
        """No censor at all: empty policies, the lab's chains flushed, qdiscs removed."""
        squid.stop(self.paths, self.state)
        policy.write(self.paths.isp_policy, {})
        policy.write(self.paths.net_policy, {})
        for ns, chains in plan.CHAINS.items():
            for table, chain, _ in chains:
                self.iptables(ns, table, "-F", chain)
        for ns, devices in plan.DEVICES.items():
            for dev in devices:
                shown = run(["tc", "-n", ns, "qdisc", "show", "dev", dev]).stdout
                if "htb" in shown or "tbf" in shown or "prio" in shown:
                    self.tc(ns, f"qdisc del dev {dev} root", check=False)
                if "ingress" in shown:
                    self.tc(ns, f"qdisc del dev {dev} ingress", check=False)
        self.set_uplink(True)


def up(paths: Paths | None = None) -> Lab:
    """Build the lab from nothing (after removing whatever is left), servers started."""
    paths = paths or Paths()
    down(paths)
    paths.root.mkdir(parents=True, exist_ok=True)
    state = State()
    state.save(paths)
    try:
        _build_network()
        new_ca(paths)
        lab = Lab(paths, state)
        lab.reset()
        py = [sys.executable, "-m"]
        for role, ns, module in (
            ("net", plan.NET, "tests.lab.internet"),
            ("isp", plan.ISP, "tests.lab.isp"),
        ):
            proc = processes.start(
                paths, state, role, ns, [*py, module, "--state", str(paths.root)], module
            )
            processes.wait_ready(paths, role, proc)
        if processes.helper_available():
            listen = f"{plan.CONTROL_HOST}:{plan.HELPER_PORT}"
            argv = [*processes.probe_command(), "helper", "serve", "--listen", listen,
                    "--resolver", plan.PUBLIC_DNS, "--ca-bundle", lab.ca_bundle,
                    "--routable", plan.ROUTABLE, "--timeout", "3",
                    "--replay-listen", f"{plan.CONTROL_HOST}:{plan.REPLAY_PORT}"]  # fmt: skip
            proc = processes.start(paths, state, "helper", plan.CONTROL, argv, "helper")
            processes.wait_ready(paths, "helper", proc, line="listening")
            state.helper = True
            state.save(paths)
        health(lab)
    except BaseException:
        down(paths)
        raise
    return lab


def attach(paths: Paths | None = None) -> Lab | None:
    """The lab already running (its processes alive and healthy), or None."""
    paths = paths or Paths()
    state = State.load(paths)
    if state is None or not state.processes or set(lab_namespaces()) != set(plan.NAMESPACES):
        return None
    if not all(processes.alive(int(i["pid"]), str(i["marker"])) for i in state.processes.values()):
        return None
    lab = Lab(paths, state)
    try:
        lab.reset()
        health(lab)
    except LabError:
        return None
    return lab


# The lab works when, from the vantage with no censor: the ISP resolver and DoH tell the
# truth, every reference and every site's certificate validates, the helper answers.
def health_checks(helper: bool) -> list[dict[str, Any]]:
    """Self-checks (tests.lab.selfcheck) that a freshly reset lab must pass."""
    checks: list[dict[str, Any]] = [
        {
            "kind": "dns",
            "name": "www.facebook.com",
            "server": plan.ISP_RESOLVER,
            "expect": f"answer {plan.ZONE['www.facebook.com']}",
        },
        {
            "kind": "doh",
            "name": "web.telegram.org",
            "expect": f"answer {plan.ZONE['web.telegram.org']}",
        },
    ]
    for name in ("www.wikipedia.org", "www.facebook.com", "twitter.com"):
        checks.append({"kind": "tls", "ip": plan.ZONE[name], "sni": name, "expect": "valid"})
    if helper:
        checks.append(
            {
                "kind": "http",
                "ip": plan.CONTROL_HOST,
                "port": plan.HELPER_PORT,
                "host": plan.CONTROL_HOST,
                "path": "/v1/health",
                "expect": "status 200 *",
            }
        )
    return checks


def selfcheck(lab: Lab, role: str, checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run checks inside a namespace (``vantage`` or ``control``); each result says ok/got."""
    done = lab.python(plan.NS_BY_ROLE[role], "tests.lab.selfcheck", stdin=json.dumps(checks))
    try:
        results = json.loads(done.stdout)
    except ValueError:
        raise LabError(f"self-check in {role} crashed: {done.stderr.strip()[-2000:]}") from None
    return list(results)


def health(lab: Lab) -> None:
    """Raise LabError unless the reset lab passes its health checks."""
    failed = [r for r in selfcheck(lab, "vantage", health_checks(lab.helper)) if not r["ok"]]
    if failed:
        raise LabError(f"the lab is not healthy: {json.dumps(failed, indent=1)}")


def main() -> int:
    """``python -m tests.lab.topology up|down|status``."""
    parser = argparse.ArgumentParser(description="the censorship lab's namespaces (root only)")
    parser.add_argument("action", choices=("up", "down", "status"))
    action = parser.parse_args().action
    if action == "up":
        lab = up()
        print(
            f"lab up: {', '.join(plan.NAMESPACES)}; root CA {lab.ca_bundle}; "
            f"helper {'on' if lab.helper else 'off'}"
        )
    elif action == "down":
        down()
        print("lab down")
    else:
        lab_or_none = attach()
        print("lab up and healthy" if lab_or_none else "lab not running (or not healthy)")
        return 0 if lab_or_none else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
