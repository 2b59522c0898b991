"""The ISP, run inside the ``pl-isp`` namespace: ``python -m tests.lab.isp``.

One process holds what the ISP runs besides its router and iptables rules: the resolver
its customers use (198.18.1.1:53), answering from the lab's zone except where the policy
says otherwise, and the censor's machines of ``tests.lab.censor``.

Resolver policy, per name: ``{"action": "nxdomain" | "servfail" | "refused" | "silent"}``,
``{"action": "answer", "ips": [...]}`` (a bogon, a blockpage address, a CDN edge), or
``{"action": "delay", "seconds": S}`` (the genuine answer, late: what an injector races).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import dns.message

from tests.lab import plan
from tests.lab.censor import HTTPProxy, Injector, TLSInterceptor
from tests.lab.policy import PolicyFile
from tests.lab.state import Paths, mark_ready
from tests.servers.dns_server import (
    Answer,
    Behaviour,
    Delay,
    NXDomain,
    Refused,
    ScriptedDNSServer,
    ServFail,
    Silent,
)


def behaviour(name: str, rule: dict[str, Any] | None) -> Behaviour:
    """What the ISP resolver does for ``name`` under a policy rule (None: the truth)."""
    truth: Behaviour = Answer(plan.ZONE[name]) if name in plan.ZONE else NXDomain()
    if rule is None:
        return truth
    action = rule.get("action")
    simple: dict[str, Behaviour] = {
        "nxdomain": NXDomain(),
        "servfail": ServFail(),
        "refused": Refused(),
        "silent": Silent(),
    }
    if action in simple:
        return simple[action]
    if action == "answer":
        return Answer(*rule["ips"])
    if action == "delay":
        return Delay(float(rule["seconds"]), truth)
    raise ValueError(f"resolver policy for {name}: unknown action {action!r}")


class ISPResolver(ScriptedDNSServer):
    """The scripted DNS server, its script read from the ISP policy at every query."""

    def __init__(self, policy: PolicyFile) -> None:
        super().__init__(host=plan.ISP_RESOLVER, port=53)
        self.policy = policy

    def receive(self, query: dns.message.Message) -> Behaviour:
        """The policy's behaviour for the query's name."""
        name = query.question[0].name.to_text(omit_final_dot=True).lower()
        self.queries[name] += 1
        return behaviour(name, (self.policy.current().get("resolver") or {}).get(name))


async def main(paths: Paths) -> None:
    """Start the resolver and the censor's machines, say so, then serve until killed."""
    policy = PolicyFile(paths.isp_policy)
    await ISPResolver(policy).start()
    Injector(policy, plan.UPLINK[1]).start()
    proxy = HTTPProxy(policy)
    await asyncio.start_server(proxy.handle, "0.0.0.0", plan.HTTP_PROXY_PORT, limit=64 * 1024)
    interceptor = TLSInterceptor(policy, str(paths.ca_cert))
    await asyncio.start_server(
        interceptor.handle,
        "0.0.0.0",
        plan.TLS_PROXY_PORT,
        ssl=interceptor.server_context,
        ssl_handshake_timeout=10.0,
    )
    mark_ready(paths, "isp")
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state", type=Path, default=Paths().root)
    asyncio.run(main(Paths(parser.parse_args().state)))
