"""The censorship lab: the real ``probe`` against a real censor, in network namespaces.

plan.py        the address plan and zone (every namespace, link, address and name)
topology.py    up() / reset() / down(): namespaces, veths, routes, the lab's iptables
               chains, the server processes (by PID), the health check
internet.py    the sites (each with /big, a file served with Range for throughput tests,
               and the paths a scenario breaks or slows), the public resolver, DoH, the
               blockpage server (in pl-net)
isp.py         the ISP resolver and the censor's machines (in pl-isp)
censor.py      DNS injector, transparent HTTP proxy, intercepting TLS proxy
policy.py      the files through which a scenario tells the servers what to do
state.py       the state directory (PIDs, the lab root CA, logs)
selfcheck.py   checks, run from the vantage or the control, that the censor works
scenario.py    scenarios as data (scenarios/*.toml) and the lab's target lists
               (targets.toml; targets-throughput.toml, the throughput URLs;
               targets-paths.toml, one site's broken and slow paths)
runner.py      one scenario end to end (the probe's lab config, its throughput budgets),
               and the accuracy score
test_lab.py    the pytest tests (marked ``lab``; they need root, iproute2, iptables)
"""
