"""A loopback world in a process of its own, for a probe that runs in another network
namespace (whose 127.0.0.1 is not the test's): ``ip netns exec NS python -m
tests.servers.world_process DIR NAME...``.

It makes its own test CA (bundle in DIR/ca.pem), writes DIR/probe.toml pointing at the
world, with the first NAME as the reference host, prints one JSON line
``{"https_port": N, "config": PATH}`` and serves until its stdin closes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trustme

from tests.servers.world import running_world


def main(directory: Path, names: list[str]) -> None:
    ca = trustme.CA(organization_name="Probe Test Root")
    bundle = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with running_world(ca, str(bundle), names) as world:
        reference = f"https://{names[0]}:{world.web.https_port}/"
        config = world.write_config(directory / "probe.toml", reference)
        print(json.dumps({"https_port": world.web.https_port, "config": str(config)}), flush=True)
        sys.stdin.read()  # until the test closes it


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
