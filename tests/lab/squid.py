"""Debian's real squid as the ISP's transparent filter, for the scenarios that name it.

    [squid]                        # in a scenario file
    deny = ["www.facebook.com"]    # http_access deny for these hosts; the rest is relayed

with a nat rule sending port 80 of the targeted addresses to ``plan.SQUID_PORT`` (squid's
``intercept`` port: it reads the original destination from conntrack, as the lab's own
proxy does). Squid runs in the foreground (``squid -N``) inside the ISP namespace with a
config, pid file and logs under the lab's state directory and no disk cache; it is started
when the scenario is applied and stopped by its PID (``tests.lab.processes``) when the lab is
reset, so nothing of it outlives the scenario. Its error pages are the package's own (the
stock ERR_ACCESS_DENIED), which is the point: the probe meets the page real filters serve.

The Debian package's own service must not run: ``.ci/run`` installs squid with a
``policy-rc.d`` that forbids starting services, and this module never touches it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from tests.lab import plan, processes
from tests.lab.state import Paths, State

ROLE = "squid"
_USER = "proxy"  # the Debian package's user; squid drops to it after binding its ports
_READY = "Accepting NAT intercepted HTTP Socket connections"
_HOST = re.compile(r"^[a-z0-9.-]+$")


def available() -> bool:
    """Whether squid is installed (the scenarios that name it need it)."""
    return shutil.which("squid") is not None


def directory(paths: Paths) -> Path:
    return paths.root / "squid"


def config(paths: Paths, deny: Sequence[str]) -> str:
    """squid.conf: deny the named hosts, relay the rest, keep nothing on disk."""
    bad = [h for h in deny if not _HOST.match(h)]
    if bad or not deny:
        raise ValueError(f"squid: deny needs host names, got {list(deny)!r}")
    where = directory(paths)
    return "\n".join(
        [
            "# Written by tests.lab.squid for one lab scenario; removed with the lab.",
            "http_port 127.0.0.1:3128",  # squid wants a forward-proxy port besides intercept
            f"http_port {plan.SQUID_PORT} intercept",
            f"acl denied dstdomain {' '.join(deny)}",
            "http_access deny denied",
            "http_access allow all",
            "cache deny all",
            "cache_mem 8 MB",
            f"dns_nameservers {plan.PUBLIC_DNS}",  # the truth, as an ISP's own resolver
            "visible_hostname squid.isp.lab",
            f"cache_effective_user {_USER}",
            f"pid_filename {where / 'squid.pid'}",
            f"cache_log {where / 'cache.log'}",
            f"access_log stdio:{where / 'access.log'}",
            f"coredump_dir {where}",
            "netdb_filename none",
            "shutdown_lifetime 0 seconds",  # SIGTERM ends it at once
            "",
        ]
    )


def start(paths: Paths, state: State, deny: Sequence[str]) -> None:
    """Run squid in the ISP namespace until ``stop``; return once its intercept port listens."""
    stop(paths, state)
    where = directory(paths)
    where.mkdir(parents=True, exist_ok=True)
    conf = where / "squid.conf"
    conf.write_text(config(paths, deny), encoding="utf-8")
    user = pwd.getpwnam(_USER)
    os.chown(where, user.pw_uid, user.pw_gid)  # its logs and pid file, after it drops root
    paths.log(ROLE).unlink(missing_ok=True)
    argv = ["squid", "-N", "-d", "1", "-f", str(conf)]
    proc = processes.start(paths, state, ROLE, plan.ISP, argv, str(conf))
    processes.wait_ready(paths, ROLE, proc, line=_READY)


def stop(paths: Paths, state: State) -> None:
    """Stop the squid this lab started, by its recorded PID; nothing if none runs."""
    info = state.processes.pop(ROLE, None)
    if info is None:
        return
    processes.stop(int(info["pid"]), str(info["marker"]))
    state.save(paths)
