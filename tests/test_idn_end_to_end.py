"""A URL with a Unicode host is measured under one spelling of its name, end to end.

Python's ``ssl`` encodes a Unicode server_hostname with IDNA 2003, which maps "ß" to "ss"
(another name), while dnspython and httpx use IDNA 2008. The loader turns the host into its
IDNA 2008 A-label once (targets/model.py ascii_host), so the DNS query, the SNI, the Host
header and the certificate check all name xn--strae-oqa.test. Before, the SNI and the
certificate check named strasse.test, and a healthy site was not accessible.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import trustme

from probe.cli import main
from tests.servers.world import running_world

PUNYCODE = "xn--strae-oqa.test"


def test_a_unicode_host_is_one_name_for_dns_sni_and_the_certificate(
    ca: trustme.CA, ca_bundle: str, tmp_path: Path
) -> None:
    with running_world(ca, ca_bundle, ["ref.test", PUNYCODE]) as world:
        port = world.web.https_port
        url = f"https://straße.test:{port}/"
        targets = tmp_path / "targets.toml"
        targets.write_text(
            f'[[service]]\nname = "idn"\ncategory = "social"\nurls = {json.dumps([url])}\n',
            encoding="utf-8",
        )
        config = world.write_config(tmp_path / "probe.toml", f"https://ref.test:{port}/")
        db = tmp_path / "results.sqlite"
        args = ["run", "--config", str(config), "--targets", str(targets), "--db", str(db)]
        assert main([*args, "--no-progress"]) == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT input, verdict, detail FROM measurements").fetchall()
    # The input is kept as written; what was measured is the A-label's site.
    assert rows == [(url, "accessible", "ok")]
