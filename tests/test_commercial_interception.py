"""``probe run`` with an antivirus-like interceptor: real TLS servers whose chains a CA named
like a commercial product's forged, for the target alone or for the reference hosts too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from probe.cli import main
from tests.servers.tcp_servers import TLSServer
from tests.servers.world import World, running_world


@pytest.fixture(scope="module")
def world(ca: trustme.CA, ca_bundle: str) -> Iterator[World]:
    with running_world(ca, ca_bundle, ["ref.test", "av.test"]) as w:
        yield w


def _evidence(db: Path, run_id: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    """`probe show` of the run's one measurement: its row and its verdict's evidence."""
    assert main(["show", run_id[:8], "--db", str(db), "--json"]) == 0
    [shown] = json.loads(capsys.readouterr().out)["rows"]
    assert main(["show", str(shown["id"]), "--db", str(db), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)["evidence"]["verdict_evidence"]
    return {"row": shown, "facts": facts}


@pytest.mark.parametrize("references_intercepted", [True, False], ids=["local", "aimed"])
def test_a_commercial_interceptor_is_a_censor_only_where_the_references_were_spared(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str], references_intercepted: bool
) -> None:
    # An antivirus's root, installed in the trust store as the product does, forging chains
    # for the target; for the reference host too (local interception) or not (aimed).
    eset = trustme.CA(organization_name="ESET SSL Filter CA")
    server = world.peer(TLSServer(eset, ["av.test", "ref.test"]))
    bundle = tmp_path / "with-antivirus-root.pem"
    bundle.write_bytes(Path(world.ca_bundle).read_bytes() + eset.cert_pem.bytes())
    targets = tmp_path / "t.toml"
    targets.write_text(
        '[[service]]\nname = "av"\ncategory = "social"\n'
        f'urls = ["https://av.test:{server.port}/"]\n'
    )
    port = server.port if references_intercepted else world.web.https_port
    config = world.write_config(tmp_path / "p.toml", f"https://ref.test:{port}/")
    db = tmp_path / "r.sqlite"
    args = ["run", "--config", str(config), "--targets", str(targets), "--db", str(db)]
    assert main([*args, "--ca-bundle", str(bundle), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    [row] = out["measurements"]
    shown = _evidence(db, out["run_id"], capsys)
    facts, reason = shown["facts"], shown["row"]["reason"]  # type: ignore[index]
    assert isinstance(facts, dict) and isinstance(reason, str)
    assert (facts["fingerprint"], facts["kind"]) == ("eset.ssl-filter", "commercial")
    assert facts["cert_valid"] is True
    # What the reference presented in the vantage check is in the input's controls.
    [ref] = facts["controls"]["reference_tls"]
    assert ref["url"] == f"https://ref.test:{port}/" and ref["issuer"]
    if references_intercepted:
        assert (row["verdict"], row["detail"]) == ("inconclusive", "control.failed")
        assert "local to this machine or network" in reason and "eset.ssl-filter" in reason
        assert facts["seen_at_references"] == [ref["url"]]
        assert ref["interception"] == "eset.ssl-filter" and "ESET" in ref["issuer"]
    else:
        assert (row["verdict"], row["detail"]) == ("blocked", "tls.mitm")
        assert facts["seen_at_references"] == [] and ref["interception"] is None
