"""``probe run`` against DNS that points at a middlebox, ghost names, and their look-alikes.

Real servers on loopback: the resolver under test (scripted per name), DoH telling the
truth, the web server (127.0.0.1) and one-page servers on other loopback addresses at the
same ports: a transparent proxy's "Access Denied" (127.0.0.2), an ISP's warning server
whose certificate names only itself (127.0.0.3), and a CDN edge mirroring the site
(127.0.0.5).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from probe.cli import main
from tests.servers.dns_server import Answer, NXDomain
from tests.servers.page_server import PageServer
from tests.servers.world import World, running_world

NAMES = ["ref.test", "mbox.test", "cdnhttp.test", "ghost.test", "intranet.test"]
PROXY, WARNING, EDGE = "127.0.0.2", "127.0.0.3", "127.0.0.5"
# Unlike the site's front page in title and length (a title alone is no difference: rule 6).
DENIED = "Access Denied. You are not allowed to open this page from this network. " * 20


@pytest.fixture(scope="module")
def world(ca: trustme.CA, ca_bundle: str) -> Iterator[World]:
    with running_world(ca, ca_bundle, NAMES) as w:
        http, https = w.web.http_port, w.web.https_port
        servers = [
            PageServer(PROXY, http, "Access Denied", DENIED, https_port=https, ca=ca,
                       cert_names=("proxy.isp.test",)),
            PageServer(WARNING, http, "Notice", "This resource is not available.",
                       https_port=https, ca=ca, cert_names=("warning.isp.test",)),
            PageServer(EDGE, http, "", "", mirror=True),
        ]  # fmt: skip
        for server in servers:
            w.bg.run(server.start())
        # The middlebox: the resolver sends the name to the proxy, DoH to the site.
        w.name("mbox.test", resolver=Answer(PROXY), truth=Answer("127.0.0.1"))
        # Look-alike: a CDN's local edge, another address serving the same page.
        w.name("cdnhttp.test", resolver=Answer(EDGE), truth=Answer("127.0.0.1"))
        # The ghost: a name that exists nowhere, answered with the warning server.
        w.name("ghost.test", resolver=Answer(WARNING), truth=NXDomain())
        # Look-alike: split-horizon, a name only the local resolver knows, served for real.
        w.name("intranet.test", resolver=Answer("127.0.0.1"), truth=NXDomain())
        try:
            yield w
        finally:
            for server in servers:
                w.bg.run(server.stop())


EXPECTED = {
    "http://mbox.test/": ("blocked", "dns", "dns.blockpage_ip", "dns.middlebox_page"),
    "https://mbox.test/": ("blocked", "dns", "dns.blockpage_ip", "dns.steered"),
    "http://cdnhttp.test/": ("accessible", None, "ok", "http.ok"),
    "http://ghost.test/": ("blocked", "dns", "dns.blockpage_ip", "dns.ghost_name"),
    "https://ghost.test/": ("blocked", "dns", "dns.blockpage_ip", "dns.ghost_name"),
    "https://intranet.test/": ("accessible", None, "ok", "http.ok"),
    "http://intranet.test/": ("inconclusive", None, "control.failed", "dns.ghost_unproven"),
}


def _targets(w: World, tmp: Path) -> Path:
    ports = {"http": w.web.http_port, "https": w.web.https_port}
    lines = []
    for i, url in enumerate(EXPECTED):
        scheme, rest = url.split("://")
        lines += [
            "[[service]]",
            f'name = "s{i}"',
            'category = "social"',
            f'urls = ["{scheme}://{rest[:-1]}:{ports[scheme]}/"]',
        ]
    path = tmp / "targets.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_middleboxes_and_ghosts_against_their_look_alikes(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = world.write_config(
        tmp_path / "probe.toml", f"https://ref.test:{world.web.https_port}/"
    )
    db = tmp_path / "results.sqlite"
    argv = ["run", "--config", str(config), "--targets", str(_targets(world, tmp_path))]
    assert main([*argv, "--db", str(db), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["export", "--db", str(db), "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    got = {}
    for row in rows:
        scheme, rest = str(row["input"]).split("://")
        key = f"{scheme}://{rest.split(':')[0]}/"
        got[key] = (row["verdict"], row["layer"], row["detail"], row["rule"])
    assert got == EXPECTED
    # The made-up name (the control against NXDOMAIN rewriting) went to the resolver under test.
    assert any(name.startswith("nx-") and name.endswith(".test") for name in world.resolver.queries)
