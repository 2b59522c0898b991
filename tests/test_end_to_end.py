"""``probe run`` then ``probe export`` through the CLI against a loopback world of censors.

Each target below is a made-up name whose resolver answer, server or path is scripted to
behave like one censorship technique or one look-alike; the expected verdict is in the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trustme

from probe.cli import main
from probe.config import load_settings
from probe.engine.doh import DOH_CONNECTIONS
from probe.engine.sweep import Sweep
from probe.helper.server import HelperSettings
from probe.store.database import open_database
from probe.store.owner import sweep_lock
from probe.store.writer import AsyncWriter
from targets.load import load_many
from tests.mounts import tmpfs
from tests.servers.dns_server import Answer, Inject, NXDomain, ServFail, Silent
from tests.servers.helper_server import running_helper
from tests.servers.tcp_servers import ClosedPort, SNIFilter, TLSServer
from tests.servers.world import World, helper_process, running_world

NAMES = [
    "ref.test", "ok.test", "nx.test", "servfail.test", "bogon.test", "inject.test",
    "sni-reset.test", "sni-drop.test", "mitm.test", "selfsigned.test", "host-reset.test",
    "blockpage.test", "down.test", "private.test", "redirect-private.test", "gone.test",
    "cdn.test",
]  # fmt: skip


@pytest.fixture(scope="module")
def world(ca: trustme.CA, ca_bundle: str, rogue_ca: trustme.CA) -> Iterator[World]:
    with running_world(ca, ca_bundle, NAMES) as w:
        w.name("nx.test", resolver=NXDomain())
        w.name("servfail.test", resolver=ServFail())
        w.name("bogon.test", resolver=Answer("10.10.34.34"))
        w.name("inject.test", resolver=Inject(forged=("127.0.0.2",), genuine=("127.0.0.1",)))
        w.name("private.test", resolver=Answer("192.168.7.7"), truth=Answer("192.168.7.7"))
        w.name("gone.test", resolver=NXDomain(), truth=NXDomain())
        # A CDN that localises: DoH names another address, the resolver's serves a valid chain.
        w.name("cdn.test", resolver=Answer("127.0.0.1"), truth=Answer("127.0.0.3"))
        yield w


def _targets(w: World, tmp: Path) -> Path:
    web = w.web
    sni_reset = w.peer(SNIFilter(web.https_port, {"sni-reset.test"}, "reset"))
    sni_drop = w.peer(SNIFilter(web.https_port, {"sni-drop.test"}, "drop"))
    host_reset = w.peer(SNIFilter(web.http_port, {"host-reset.test"}, "reset"))
    mitm = w.peer(
        TLSServer(
            trustme.CA(organization_name="Information Security Certification Authority"),
            ["mitm.test"],
        )
    )
    selfsigned = w.peer(
        TLSServer(trustme.CA(organization_name="Someone Else"), ["selfsigned.test"])
    )
    closed = w.peer(ClosedPort())
    rows = {
        "ok": [f"https://ok.test:{web.https_port}/", f"http://ok.test:{web.http_port}/"],
        "cdn": [f"https://cdn.test:{web.https_port}/"],
        "nx": [f"https://nx.test:{web.https_port}/"],
        "servfail": [f"https://servfail.test:{web.https_port}/"],
        "bogon": [f"https://bogon.test:{web.https_port}/"],
        "inject": [f"https://inject.test:{web.https_port}/"],
        "sni-reset": [f"https://sni-reset.test:{sni_reset.port}/"],
        "sni-drop": [f"https://sni-drop.test:{sni_drop.port}/"],
        "mitm": [f"https://mitm.test:{mitm.port}/"],
        "selfsigned": [f"https://selfsigned.test:{selfsigned.port}/"],
        "host-reset": [f"http://host-reset.test:{host_reset.port}/"],
        "blockpage": [f"http://blockpage.test:{web.http_port}/blockpage"],
        "down": [f"https://down.test:{closed.port}/"],
        "private": ["https://private.test/"],
        "redirect-private": [f"http://redirect-private.test:{web.http_port}/redirect?to=http://10.1.2.3/"],
        "gone": [f"https://gone.test:{web.https_port}/"],
    }  # fmt: skip
    lines = []
    for name, urls in rows.items():
        lines += [
            "[[service]]",
            f'name = "{name}"',
            'category = "social"',
            f"urls = {json.dumps(urls)}",
        ]
        if name == "ok":
            lines.append(f'endpoints = ["127.0.0.1:{web.http_port}", "127.0.0.1:{closed.port}"]')
    path = tmp / "targets.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


EXPECTED = {
    # input prefix: (verdict, detail)
    "https://ok.test": ("accessible", "ok"),
    "http://ok.test": ("accessible", "ok"),
    "https://cdn.test": ("accessible", "ok"),
    "127.0.0.1:HTTP": ("accessible", "ok"),
    "127.0.0.1:CLOSED": ("inconclusive", "control.failed"),
    "https://nx.test": ("blocked", "dns.nxdomain"),
    "https://servfail.test": ("blocked", "dns.servfail"),
    "https://bogon.test": ("blocked", "dns.bogon"),
    "https://inject.test": ("blocked", "dns.injection"),
    "https://sni-reset.test": ("blocked", "tls.reset"),
    "https://sni-drop.test": ("blocked", "tls.timeout"),
    "https://mitm.test": ("blocked", "tls.mitm"),
    "https://selfsigned.test": ("inconclusive", "control.failed"),
    "http://host-reset.test": ("blocked", "http.reset"),
    "http://blockpage.test": ("blocked", "http.blockpage"),
    "https://down.test": ("inconclusive", "control.failed"),
    "https://private.test": ("inconclusive", "control.failed"),
    "http://redirect-private.test": ("inconclusive", "control.failed"),
    "https://gone.test": ("inconclusive", "site.down"),
}


@pytest.fixture(scope="module")
def sweep(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("e2e")
    targets = _targets(world, tmp)
    config = world.write_config(tmp / "probe.toml", f"https://ref.test:{world.web.https_port}/")
    db = tmp / "results.sqlite"
    code = main(
        [
            "run",
            "--config",
            str(config),
            "--targets",
            str(targets),
            "--db",
            str(db),
            "--no-progress",
        ]
    )
    return {"code": code, "db": db, "config": config, "targets": targets}


def _export(db: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["export", "--db", str(db), "--format", "jsonl", *extra]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_every_technique_gets_its_verdict(
    world: World, sweep: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    assert sweep["code"] == 0
    rows = _export(sweep["db"], capsys)  # type: ignore[arg-type]
    got = {}
    for row in rows:
        parts = urlsplit(str(row["input"]))
        key = f"{parts.scheme}://{parts.hostname}"
        if str(row["input"]).startswith("127.0.0.1:"):
            port = int(str(row["input"]).split(":")[1])
            key = "127.0.0.1:HTTP" if port == world.web.http_port else "127.0.0.1:CLOSED"
        got[key] = (row["verdict"], row["detail"])
    assert got == EXPECTED
    assert all(row["country"] == "KZ" and row["asn"] == 64500 for row in rows)
    assert all(str(row["measured_at"]).endswith("Z") for row in rows)


def test_private_addresses_are_never_contacted(world: World, sweep: dict[str, object]) -> None:
    # The redirect target 10.1.2.3 and private.test's 192.168.7.7 appear nowhere but in rows.
    assert any(
        h and h.startswith("redirect-private.test") for h in world.web.hosts_seen("/redirect")
    )
    assert not any(h and h.startswith(("10.", "192.168.")) for h in world.web.hosts_seen())


def test_show_gives_the_evidence(
    sweep: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _export(sweep["db"], capsys)  # type: ignore[arg-type]
    sni = next(r for r in rows if str(r["input"]).startswith("https://sni-reset.test"))
    assert main(["show", str(sni["measurement_id"]), "--db", str(sweep["db"]), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    evidence = shown["evidence"]
    tls_attempts = [o for o in evidence["observations"] if o["kind"] == "TLSObservation"]
    assert len(tls_attempts) == 2 and all(o["failure"] == "connection_reset" for o in tls_attempts)
    innocuous = evidence["verdict_evidence"]["controls"]["tls_innocuous"]
    assert innocuous[0]["failure"] is None and innocuous[0]["sni"] == "www.example.com"


def test_export_filters_and_csv(
    sweep: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _export(sweep["db"], capsys, "--service", "nx")  # type: ignore[arg-type]
    assert [r["detail"] for r in rows] == ["dns.nxdomain"]
    capsys.readouterr()
    assert (
        main(["export", "--db", str(sweep["db"]), "--format", "csv", "--since", "2000-01-01"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("measurement_id,run_id,service,category,input,verdict,layer,detail")
    assert len(lines) == 1 + len(EXPECTED)


def test_list_and_json_run(sweep: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["list", "--db", str(sweep["db"]), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert runs[0]["status"] == "completed" and runs[0]["measurements"] == len(EXPECTED)
    assert runs[0]["verdicts"]["blocked"] == 9


def test_offline_vantage_contacts_no_target(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.name("deadref.test", resolver=Silent())
    world.resolver.queries.clear()
    seen_before = len(world.web.requests)
    config = world.write_config(
        tmp_path / "p.toml", f"https://deadref.test:{world.web.https_port}/"
    )
    targets = tmp_path / "t.toml"
    targets.write_text(
        '[[service]]\nname = "ok"\ncategory = "social"\nurls = ["https://ok.test/"]\n'
    )
    db = tmp_path / "r.sqlite"
    assert (
        main(["run", "--config", str(config), "--targets", str(targets), "--db", str(db), "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "offline" and out["vantage_ok"] is False
    assert [m["detail"] for m in out["measurements"]] == ["vantage.offline"]
    assert world.resolver.queries["ok.test"] == 0 and len(world.web.requests) == seen_before


def test_bad_targets_exit_2_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    targets = tmp_path / "bad.toml"
    targets.write_text('[[service]]\nname = "x"\ncategory = "social"\nurls = ["ftp://x.test/"]\n')
    db = tmp_path / "r.sqlite"
    assert main(["run", "--targets", str(targets), "--db", str(db)]) == 2
    assert f"{targets}:4" in capsys.readouterr().err
    assert not db.exists()


def _stored(db: Path) -> int:
    """Rows committed so far, read as another process would (WAL allows it)."""
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=1)) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM measurements").fetchone()[0])
        except sqlite3.OperationalError:  # tables not created yet
            return 0


def _sigint_as_from_a_terminal() -> None:
    """In the child: SIGINT does what it does to a command run at a terminal. A job started
    in the background without job control (`sh -c 'cmd &'`, nohup, some CI runners) ignores
    SIGINT, as do its children, and Python then leaves it ignored: the probe would not see
    the Ctrl-C this test sends (and would rightly not: it was told to ignore it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _hanging_sweep(world: World, tmp_path: Path, db: Path) -> subprocess.Popen[bytes]:
    """A real `probe run` subprocess that has stored six quick inputs and waits on a seventh."""
    world.name("hang.test", resolver=Silent())  # its lookup waits out a long DNS timeout
    lines = []
    for i in range(6):
        lines += ["[[service]]", f'name = "s{i}"', 'category = "social"',
                  f'urls = ["https://ok.test:{world.web.https_port}/"]']  # fmt: skip
    lines += [
        "[[service]]",
        'name = "hang"',
        'category = "social"',
        'urls = ["https://hang.test/"]',
    ]
    targets = tmp_path / "t.toml"
    targets.write_text("\n".join(lines) + "\n")
    config = world.write_config(tmp_path / "p.toml", f"https://ref.test:{world.web.https_port}/")
    world.resolver.queries.clear()
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe", "run", "--config", str(config), "--targets", str(targets),
         "--db", str(db), "--no-progress", "--dns-timeout", "30",
         # The seventh input must outlast the wait below: the world's config gives an input
         # 20 s, less than that wait's deadline on a busy machine.
         "--target-timeout", "120", "--sweep-timeout", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_sigint_as_from_a_terminal,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _stored(db) < 6 and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is not None or _stored(db) < 6:
        proc.kill()
        _, err = proc.communicate(timeout=20)
        pytest.fail(f"the sweep should hang on its seventh input with six stored: exit "
                    f"{proc.returncode}, {_stored(db)} stored; {err.decode()[-2000:]}")  # fmt: skip
    return proc


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_ctrl_c_and_sigterm_keep_what_finished(
    world: World, tmp_path: Path, sig: signal.Signals, code: int, word: str
) -> None:
    """SIGINT or SIGTERM to a real `probe run`: finished inputs stored, run `interrupted`."""
    db = tmp_path / "r.sqlite"
    proc = _hanging_sweep(world, tmp_path, db)
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err.decode()
    assert err.decode() == f"probe: {word}; every input that finished is stored\n"
    store = open_database(str(db), read_only=True)
    try:
        run = store.list_runs()[0]
        assert run.status == "interrupted"
        assert run.measurements == 6  # the six quick inputs; the hanging one is not invented
        assert run.verdicts.get("accessible") == 6
        assert run.finished_at is not None
    finally:
        store.close()


def test_kill_9_leaves_a_run_that_the_next_open_calls_aborted(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No process outlives SIGKILL to say how it ended: its lock goes, and that says it."""
    db = tmp_path / "r.sqlite"
    proc = _hanging_sweep(world, tmp_path, db)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with contextlib.closing(sqlite3.connect(db)) as raw:
        assert raw.execute("SELECT status FROM runs").fetchall() == [("running",)]
    capsys.readouterr()
    assert main(["list", "--json", "--db", str(db)]) == 0  # a reader shows it, writes nothing
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert run["status"] == "aborted" and run["measurements"] == 6
    with contextlib.closing(sqlite3.connect(db)) as raw:
        assert raw.execute("SELECT status FROM runs").fetchall() == [("running",)]
    with sweep_lock(str(db), "probe run") as lock:  # the next sweep records it
        open_database(str(db), sweep=lock).close()
    with contextlib.closing(sqlite3.connect(db)) as raw:
        assert raw.execute("SELECT status FROM runs").fetchall() == [("aborted",)]


def test_a_full_disk_fails_the_sweep_with_one_message(world: World, tmp_path: Path) -> None:
    """A real full disk (a 384 KiB tmpfs): exit 4, one line, no traceback, the run `failed`."""
    lines = []
    for i in range(80):  # 80 hosts: many writes are queued when the disk fills
        world.name(f"disk{i}.test")
        lines += ["[[service]]", f'name = "s{i}"', 'category = "social"',
                  f'urls = ["http://disk{i}.test:{world.web.http_port}/"]']  # fmt: skip
    targets = tmp_path / "t.toml"
    targets.write_text("\n".join(lines) + "\n")
    config = world.write_config(tmp_path / "p.toml", f"https://ref.test:{world.web.https_port}/")
    with tmpfs(tmp_path / "small", "384k") as small:
        db = small / "r.sqlite"
        proc = subprocess.run(
            [sys.executable, "-m", "probe", "run", "--config", str(config),
             "--targets", str(targets), "--db", str(db), "--no-progress"],
            capture_output=True, timeout=120,
        )  # fmt: skip
        err = proc.stderr.decode()
        assert proc.returncode == 4, err
        assert len(err.splitlines()) == 1, err
        assert err.startswith("probe: the sweep failed: ") and "disk is full" in err, err
        assert "Traceback" not in err and "never retrieved" not in err
        store = open_database(str(db), read_only=True)
        try:
            (run,) = store.list_runs()
            assert 0 < run.measurements < 80
            # The lock file's reserve, given back, leaves room to say how the run ended.
            assert run.status == "failed" and run.finished_at is not None
            assert f"run {run.run_id[:8]} is marked failed" in err
        finally:
            store.close()


@pytest.fixture(scope="module")
def helper_url(world: World) -> Iterator[str]:
    with helper_process(world) as url:
        yield url


def test_with_the_helper_a_dead_server_is_site_down(
    world: World, helper_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = world.peer(ClosedPort())
    targets = tmp_path / "t.toml"
    targets.write_text(
        '[[service]]\nname = "down"\ncategory = "social"\n'
        f'urls = ["https://down.test:{closed.port}/", "http://ok.test:{world.web.http_port}/"]\n'
        f'endpoints = ["127.0.0.1:{closed.port}"]\n'
    )
    config = world.write_config(tmp_path / "p.toml", f"https://ref.test:{world.web.https_port}/")
    db = tmp_path / "r.sqlite"
    args = ["run", "--config", str(config), "--targets", str(targets), "--db", str(db), "--json"]
    assert main([*args, "--helper", helper_url]) == 0
    out = json.loads(capsys.readouterr().out)
    got = {m["input"].split(":")[0]: (m["verdict"], m["detail"]) for m in out["measurements"]}
    assert got == {
        "https": ("inconclusive", "site.down"),  # the helper could not connect either
        "http": ("accessible", "ok"),  # the helper saw the same page
        "127.0.0.1": ("inconclusive", "site.down"),
    }
    assert main(["show", out["run_id"][:8], "--db", str(db), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert main(["show", str(rows[0]["id"]), "--db", str(db), "--json"]) == 0
    evidence = json.loads(capsys.readouterr().out)["evidence"]
    assert evidence["verdict_evidence"]["controls"]["helper"]["tcp_ok"] is False


def test_a_helper_with_a_token_answers_only_probes_that_have_it(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = world.peer(ClosedPort())
    token = tmp_path / "helper.token"
    token.write_text("0123456789abcdef\n", encoding="utf-8")
    targets = tmp_path / "t.toml"
    targets.write_text(
        '[[service]]\nname = "down"\ncategory = "social"\n'
        f'endpoints = ["127.0.0.1:{closed.port}"]\n'
    )
    config = world.write_config(tmp_path / "p.toml", f"https://ref.test:{world.web.https_port}/")
    args = ["run", "--config", str(config), "--targets", str(targets), "--json"]
    got, problems = {}, {}
    with helper_process(world, token) as helper:
        for name, extra in (("without", []), ("with", ["--helper-token-file", str(token)])):
            db = tmp_path / f"{name}.sqlite"
            assert main([*args, "--db", str(db), "--helper", helper, *extra]) == 0
            out = json.loads(capsys.readouterr().out)
            [row] = out["measurements"]
            got[name] = (row["verdict"], row["detail"])
            assert main(["show", out["run_id"][:8], "--db", str(db), "--json"]) == 0
            [shown] = json.loads(capsys.readouterr().out)["rows"]
            assert main(["show", str(shown["id"]), "--db", str(db), "--json"]) == 0
            controls = json.loads(capsys.readouterr().out)["evidence"]["verdict_evidence"]
            problems[name] = controls["controls"].get("helper_problem")
    # A control that was missing says why, in the evidence a reader re-checks.
    assert problems["without"] is not None and "401" in problems["without"]
    assert problems["with"] is None
    # Refused by the helper, the probe has no control: it claims nothing. With the token the
    # helper could not connect either: the site is down.
    assert got == {"without": ("inconclusive", "control.failed"),
                   "with": ("inconclusive", "site.down")}  # fmt: skip


def test_a_bug_that_stops_a_sweep_marks_its_run_failed(world: World, tmp_path: Path) -> None:
    """An exception out of the sweep (here from its progress callback) is no interruption."""
    targets = tmp_path / "t.toml"
    targets.write_text(
        '[[service]]\nname = "ok"\ncategory = "social"\n'
        f'urls = ["https://ok.test:{world.web.https_port}/", "http://ok.test:{world.web.http_port}/"]\n'
    )
    config = world.write_config(tmp_path / "p.toml", f"https://ref.test:{world.web.https_port}/")
    settings = load_settings({"limits.per_host": 1}, str(config))
    db_path = tmp_path / "r.sqlite"

    def progress(done: int, total: int, rec: object) -> None:
        if done == 1:
            raise RuntimeError("a bug in the progress bar")

    async def sweep() -> None:
        writer = AsyncWriter(open_database(str(db_path)))
        try:
            await Sweep(settings, load_many([targets]), writer, progress).run()
        finally:
            await writer.close()

    with pytest.raises(RuntimeError, match="a bug in the progress bar"):
        asyncio.run(sweep())
    store = open_database(str(db_path), read_only=True)
    try:
        (run,) = store.list_runs()
        assert run.status == "failed" and run.measurements == 1 and run.finished_at is not None
    finally:
        store.close()


def test_a_sweep_asks_doh_once_per_name_over_one_connection(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """30 inputs on 30 names, measured at once: 30 DoH queries, a few TLS handshakes for all."""
    names = [f"doh{i}.test" for i in range(30)]
    lines = []
    for i, name in enumerate(names):
        world.name(name)
        lines += ["[[service]]", f'name = "d{i}"', 'category = "social"',
                  f'urls = ["http://{name}:{world.web.http_port}/"]']  # fmt: skip
    targets = tmp_path / "t.toml"
    targets.write_text("\n".join(lines) + "\n")
    config = world.write_config(tmp_path / "p.toml", f"https://ref.test:{world.web.https_port}/")
    db = tmp_path / "r.sqlite"
    before = world.doh.handshakes
    assert main(["run", "--config", str(config), "--targets", str(targets), "--db", str(db),
                 "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert [m["detail"] for m in out["measurements"]] == ["ok"] * len(names)
    assert {name: world.truth.queries[name] for name in names} == dict.fromkeys(names, 1)
    assert world.doh.handshakes - before <= DOH_CONNECTIONS


def test_a_national_root_the_volunteer_installed_is_still_interception(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The trust store holds the national root (installed as the state asked), so the forged
    # chain validates; the root is known by name, so it is interception all the same.
    national = trustme.CA(organization_name="Qaznet Trust Network")
    server = world.peer(TLSServer(national, ["mitm.test"]))
    bundle = tmp_path / "with-national-root.pem"
    bundle.write_bytes(Path(world.ca_bundle).read_bytes() + national.cert_pem.bytes())
    targets = tmp_path / "t.toml"
    targets.write_text(
        '[[service]]\nname = "mitm"\ncategory = "social"\n'
        f'urls = ["https://mitm.test:{server.port}/"]\n'
    )
    config = world.write_config(tmp_path / "p.toml", f"https://ref.test:{world.web.https_port}/")
    db = tmp_path / "r.sqlite"
    args = ["run", "--config", str(config), "--targets", str(targets), "--db", str(db)]
    assert main([*args, "--ca-bundle", str(bundle), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    [row] = out["measurements"]
    assert (row["verdict"], row["detail"]) == ("blocked", "tls.mitm")
    assert main(["show", out["run_id"][:8], "--db", str(db), "--json"]) == 0
    [shown] = json.loads(capsys.readouterr().out)["rows"]
    assert main(["show", str(shown["id"]), "--db", str(db), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)["evidence"]["verdict_evidence"]
    assert facts["fingerprint"] == "kz.qaznet-2019" and facts["cert_valid"] is True
    assert facts["matched_by"] == "issuer" and facts["position"] == 0


def _show_text(db: Path, run_id: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """`probe show` of the run's first measurement, as a person reads it."""
    assert main(["show", run_id[:8], "--db", str(db), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["rows"][0]["id"]
    assert main(["show", str(first), "--db", str(db)]) == 0
    return capsys.readouterr().out.splitlines()


def test_show_says_whether_the_helper_refused_or_could_not_be_reached(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No helper, a helper that refuses the address (loopback: no --routable), a helper on a
    closed port: three different lines for the same control."""
    closed = world.peer(ClosedPort())
    targets = tmp_path / "t.toml"
    targets.write_text(
        '[[service]]\nname = "down"\ncategory = "social"\n'
        f'urls = ["https://down.test:{closed.port}/"]\n'
    )
    config = world.write_config(tmp_path / "p.toml", f"https://ref.test:{world.web.https_port}/")
    refusing = running_helper(HelperSettings(world.resolver.address, world.ca_bundle))
    refusing_url = world.bg.run(refusing.__aenter__())
    lines = {}
    try:
        helpers = {
            "none": [], "refusing": ["--helper", refusing_url],
            "unreachable": ["--helper", f"http://127.0.0.1:{closed.port}"],
        }  # fmt: skip
        for name, extra in helpers.items():
            db = tmp_path / f"{name}.sqlite"
            args = ["run", "--config", str(config), "--targets", str(targets), "--db", str(db)]
            assert main([*args, "--json", *extra]) == 0
            run_id = json.loads(capsys.readouterr().out)["run_id"]
            shown = _show_text(db, run_id, capsys)
            lines[name] = next(ln.split() for ln in shown if ln.strip().startswith("helper "))
            assert any(ln.split()[:2] == ["reference", "yes"] for ln in shown), shown
            assert any(ln.split()[:4] == ["doh", "yes", "yes", "answered"] for ln in shown)
    finally:
        world.bg.run(refusing.__aexit__(None, None, None))
    # control, configured, asked, outcome, detail...
    assert lines["none"][:4] == ["helper", "no", "no", "not_configured"]
    assert lines["refusing"][:4] == ["helper", "yes", "yes", "refused"]
    assert "loopback" in " ".join(lines["refusing"])
    assert lines["unreachable"][:4] == ["helper", "yes", "yes", "unreachable"]
    assert "connection_refused" in " ".join(lines["unreachable"])


def test_services_say_all_or_partial_in_show_and_export(
    sweep: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(sweep["db"])
    capsys.readouterr()
    assert main(["list", "--db", db, "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["runs"][0]["run_id"]
    assert main(["show", run_id[:8], "--db", db, "--json"]) == 0
    services = {s["service"]: s for s in json.loads(capsys.readouterr().out)["services"]}
    assert (services["nx"]["scope"], services["nx"]["affected"]) == ("all", 1)
    # ok: three inputs accessible, the closed endpoint inconclusive: nothing blocked.
    assert (services["ok"]["scope"], services["ok"]["conclusive"]) == (None, 3)
    assert main(["show", run_id[:8], "--db", db]) == 0
    text = capsys.readouterr().out
    assert any(line.split()[:5] == ["nx", "blocked", "dns.nxdomain", "all", "(1"]
               for line in text.splitlines())  # fmt: skip
    assert main(["export", "--db", db, "--services", "--format", "jsonl", "--run", run_id]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["service"]: r["scope"] for r in exported} == {
        name: s["scope"] for name, s in services.items()
    }
