"""The hostile-input and fault campaign: what a hostile tester tried, run again, on loopback.

Each case is a real run of the ``probe`` command (or of the control helper, or of the store)
against servers on 127.0.0.1 that misbehave on purpose. A case counts

    crashes        the process died of it (exit 1, or a traceback on stderr), or a bad input
                   was not refused with exit 2 and one message
    false blocked  a look-alike (a broken server, a server down for everyone) called blocked
    lost rows      an input of a sweep that has no row afterwards

and the last line is ``faults: N cases, crashes C, false blocked B, lost rows L``; the exit
code is 0 only when all three are 0. Run from the repository root: python bench/faults.py
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import trustme

from measurements.addresses import address_problem, parse_networks
from tests.servers.broken_http import BrokenHTTP
from tests.servers.tcp_servers import ClosedPort, DroppingPort, ResetAfterFirstData, SilentListener
from tests.servers.world import World, helper_process, running_world

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["ref.test", "ok.test", "closed.test", "hop.test", "broken.test", "silent.test",
         "reset.test", "drop.test"]  # fmt: skip


@dataclass
class Tally:
    """What the campaign found, case by case."""

    cases: int = 0
    crashes: list[str] = field(default_factory=list)
    false_blocked: list[str] = field(default_factory=list)
    lost_rows: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"faults: {self.cases} cases, crashes {len(self.crashes)}, "
            f"false blocked {len(self.false_blocked)}, lost rows {len(self.lost_rows)}"
        )


def probe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command, as a user runs it (bounded: a sweep here takes seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBE_")}
    env["PYTHONPATH"] = str(ROOT)  # this checkout, whatever else is installed
    return subprocess.run(
        [sys.executable, "-m", "probe", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def crashed(done: subprocess.CompletedProcess[str]) -> bool:
    return done.returncode == 1 or "Traceback (most recent call last)" in done.stderr


def targets_file(path: Path, inputs: dict[str, str]) -> Path:
    lines = []
    for name, url in inputs.items():
        key = "endpoints" if "://" not in url else "urls"
        lines += [
            "[[service]]",
            f'name = "{name}"',
            'category = "social"',
            f"{key} = [{json.dumps(url)}]",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sweep_inputs(world: World) -> dict[str, str]:
    """Inputs whose servers are broken, down or silent for everyone: none may be blocked."""
    closed = world.peer(ClosedPort())
    broken = world.peer(BrokenHTTP(slow=6.0))
    silent = world.peer(SilentListener(idle=30))
    reset = world.peer(ResetAfterFirstData())
    drop = world.peer(DroppingPort())
    web = world.web
    return {
        "http-closed": f"http://closed.test:{closed.port}/",
        "https-closed": f"https://closed.test:{closed.port}/",
        "http-dropped": f"http://drop.test:{drop.port}/",
        "redirect-to-closed": f"http://hop.test:{web.http_port}/redirect?to=http://closed.test:{closed.port}/",
        "https-redirect-to-closed": f"https://hop.test:{web.https_port}/redirect?to=https://closed.test:{closed.port}/x",
        "redirect-to-nowhere": f"http://hop.test:{web.http_port}/redirect?to=http://nowhere.test/",
        "redirect-to-port-99999": f"http://hop.test:{web.http_port}/redirect?to=http://hop.test:99999/",
        "redirect-unparseable": f"http://hop.test:{web.http_port}/redirect?to=http://0177.0.0.1/",
        "garbage": f"http://broken.test:{broken.port}/garbage",
        "endless-header": f"http://broken.test:{broken.port}/endless",
        "many-headers": f"http://broken.test:{broken.port}/headers",
        "slow-path": f"http://broken.test:{broken.port}/slow?x=1",
        "silent-after-request": f"http://silent.test:{silent.port}/",
        "reset-by-server": f"http://reset.test:{reset.port}/",
        "endpoint-closed": f"127.0.0.1:{closed.port}",
        "fine": f"http://broken.test:{broken.port}/",
        "ok": f"https://ok.test:{web.https_port}/",
    }  # fmt: skip


def sweep_case(world: World, tmp: Path, tally: Tally, *flags: str) -> None:
    """One sweep of every broken input; each is one case."""
    inputs = sweep_inputs(world)
    targets = targets_file(tmp / "targets.toml", inputs)
    config = world.write_config(tmp / "probe.toml", f"https://ref.test:{world.web.https_port}/")
    db = tmp / "results.sqlite"
    done = probe("run", "--config", str(config), "--targets", str(targets), "--db", str(db),
                 "--no-progress", *flags, cwd=tmp)  # fmt: skip
    tally.cases += len(inputs)
    label = "sweep" + (" with helper" if flags else "")
    if crashed(done) or done.returncode != 0:
        tally.crashes.append(f"{label}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    exported = probe("export", "--db", str(db), "--format", "jsonl", cwd=tmp)
    rows = {r["service"]: r for r in map(json.loads, exported.stdout.splitlines())}
    for name in inputs:
        row = rows.get(name)
        if row is None:
            tally.lost_rows.append(f"{label}: {name}")
        elif row["verdict"] == "blocked":
            tally.false_blocked.append(f"{label}: {name}: {row['detail']}")
        elif name in ("fine", "ok") and row["verdict"] != "accessible":
            tally.false_blocked.append(f"{label}: {name}: {row['verdict']} {row['detail']}")


def bad_inputs() -> Iterator[tuple[str, str]]:
    """Target files that must be refused with exit 2 and one short message."""
    service = '[[service]]\nname = "{name}"\ncategory = "social"\nurls = [{url}]\n'
    for url in [
        "http://e\u0301x.test/",
        "http://\ufb00.test/",
        "http://x.test/" + "a" * 70_000,
        "http://[::1/",
        "ftp://x.test/",
        "http://user@x.test/",
        "http://x.test:70000/",
    ]:
        yield f"url {url[:24]!r}", service.format(name="s", url=json.dumps(url))
    yield "a 1 MB service name", service.format(name="a" * 1_000_000, url='"http://x.test/"')
    yield "TOML nested 5,000 deep", "a = " + "[" * 5000 + "]" * 5000 + "\n"
    yield "TOML inline tables nested 5,000 deep", "a = " + "{b = " * 5000 + "1" + "}" * 5000 + "\n"
    yield "not UTF-8", "\udcff"
    yield "binary", "\x00\x01\x02"


def input_cases(tmp: Path, tally: Tally) -> None:
    for label, text in bad_inputs():
        (tmp / "never.sqlite").unlink(missing_ok=True)
        path = tmp / "bad.toml"
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        for command in (
            ["targets", "check", str(path)],
            ["run", "--targets", str(path), "--db", str(tmp / "never.sqlite")],
        ):
            tally.cases += 1
            done = probe(*command, cwd=tmp)
            if crashed(done) or done.returncode != 2 or len(done.stderr) > 2000:
                tally.crashes.append(
                    f"{command[0]} {label}: exit {done.returncode}, "
                    f"{len(done.stderr)} chars: {done.stderr[-200:]!r}"
                )
        if (tmp / "never.sqlite").exists():
            tally.crashes.append(f"{label}: a database was written for a refused input")


def helper_cases(world: World, tally: Tally) -> None:
    """Hostile requests to a real helper: each a 4xx with a JSON error, never a 5xx.

    The helper runs with ``--routable 127.0.0.0/8`` (loopback is this world's internet), so
    the wrapped and respelled addresses are of ranges it must refuse: link-local, private.
    """
    nested = "[" * 2000 + "]" * 2000
    wrapped = ["2002:a9fe:a9fe::", "2002:7f00:1::", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
               "64:ff9b::a9fe:a9fe", "::ffff:169.254.169.254", "0xa9.0xfe.0xa9.0xfe", "2852039166",
               "012.1", "[fe80::1%eth0]", "192.168.0.1."]  # fmt: skip
    requests: list[tuple[str, dict[str, str], bytes]] = [
        ("nested JSON", {}, nested.encode()),
        ("not UTF-8", {}, b'{"input": "\xff\xfe"}'[:-2] + b"\xff}"),
        ("not JSON", {}, b"{{{"),
        ("a list", {}, b"[]"),
        ("10 MB", {}, b"{" + b" " * 10_000_000 + b"}"),
        ("Authorization not UTF-8", {"Authorization": "Bearer \udcff"}, b"{}"),
    ]
    loopback = parse_networks(["127.0.0.0/8"])
    for address in wrapped:
        # Safety first: an address the rule would let through is never sent to the helper
        # (it would connect there). Such a case is a defect of the rule, counted here.
        if address_problem(address, loopback) is None:
            tally.cases += 1
            tally.crashes.append(f"address {address} is allowed by address_problem")
            continue
        body = {"input": "http://ok.test/", "address": address}
        requests.append((f"address {address}", {}, json.dumps(body).encode()))
    with helper_process(world) as url:
        with httpx.Client(timeout=30, trust_env=False) as client:
            for label, headers, body in requests:
                tally.cases += 1
                raw = {k: v.encode("utf-8", "surrogateescape") for k, v in headers.items()}
                try:
                    answer = client.post(
                        f"{url}/v1/check", content=body,
                        headers={"Content-Type": "application/json", **raw},  # type: ignore[dict-item]
                    )  # fmt: skip
                except httpx.HTTPError as exc:
                    if label == "10 MB":
                        continue  # refused before it was all sent: the helper closed on it
                    tally.crashes.append(f"helper {label}: {type(exc).__name__}")
                    continue
                if answer.status_code >= 500 or not 400 <= answer.status_code < 500:
                    tally.crashes.append(f"helper {label}: {answer.status_code}")


def killed_sweep_case(world: World, tmp: Path, tally: Tally) -> None:
    """kill -9 in the middle of a sweep: the run reads as aborted, finished rows are kept."""
    silent = world.peer(SilentListener(idle=60))
    inputs = {f"s{i}": f"http://silent.test:{silent.port}/{i}" for i in range(4)}
    inputs["ok"] = f"https://ok.test:{world.web.https_port}/"
    targets = targets_file(tmp / "targets.toml", inputs)
    config = world.write_config(tmp / "probe.toml", f"https://ref.test:{world.web.https_port}/")
    db = tmp / "results.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe", "run", "--config", str(config), "--targets",
         str(targets), "--db", str(db), "--no-progress"],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    tally.cases += 1
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _rows_in(db):
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    listed = probe("list", "--db", str(db), "--json", cwd=tmp)
    statuses = [r["status"] for r in json.loads(listed.stdout or "{}").get("runs", [])]
    if crashed(listed) or statuses != ["aborted"]:
        tally.crashes.append(f"kill -9: run listed as {statuses} (exit {listed.returncode})")
    if not _rows_in(db):
        tally.lost_rows.append("kill -9: the finished input's row was lost")


def _rows_in(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM measurements").fetchone()[0])
    except sqlite3.Error:
        return 0


def read_and_export_cases(world: World, tmp: Path, tally: Tally) -> None:
    """Read commands on a mistyped path, and a CSV export of a formula-like vantage name."""
    for command in ("list", "export", "show"):
        tally.cases += 1
        args = [command, "--db", str(tmp / "nowhere" / "typo.sqlite")]
        done = probe(*args, *(["x"] if command == "show" else []), cwd=tmp)
        if crashed(done) or done.returncode != 2 or (tmp / "nowhere").exists():
            tally.crashes.append(f"{command} on a missing database: exit {done.returncode}")
    inputs = {"ok": f"https://ok.test:{world.web.https_port}/"}
    targets = targets_file(tmp / "targets.toml", inputs)
    config = world.write_config(tmp / "probe.toml", f"https://ref.test:{world.web.https_port}/")
    db = tmp / "csv.sqlite"
    formula = '=HYPERLINK("http://x.test/","click")'
    probe("run", "--config", str(config), "--targets", str(targets), "--db", str(db),
          "--no-progress", "--vantage-name", formula, cwd=tmp)  # fmt: skip
    tally.cases += 1
    exported = probe("export", "--db", str(db), "--format", "csv", cwd=tmp)
    cells = [c for row in csv.reader(io.StringIO(exported.stdout)) for c in row]
    if crashed(exported) or not cells or any(c[:1] in ("=", "+", "-", "@") for c in cells):
        tally.crashes.append("CSV export wrote a formula cell raw")


CASES: list[Callable[[Path, Tally], None]] = [input_cases]


def main() -> int:
    tally = Tally()
    ca = trustme.CA(organization_name="Faults Root")
    with tempfile.TemporaryDirectory(prefix="probe-faults-") as tmpdir:
        tmp = Path(tmpdir)
        bundle = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        with running_world(ca, str(bundle), NAMES) as world:
            (tmp / "sweep").mkdir()
            sweep_case(world, tmp / "sweep", tally)
            (tmp / "helper").mkdir()
            with helper_process(world) as helper:
                sweep_case(world, tmp / "helper", tally, "--helper", helper)
            helper_cases(world, tally)
            for name, case in (("killed", killed_sweep_case), ("reads", read_and_export_cases)):
                (tmp / name).mkdir()
                case(world, tmp / name, tally)
        for case in CASES:
            case(tmp, tally)
    for kind, found in (("crash", tally.crashes), ("false blocked", tally.false_blocked),
                        ("lost row", tally.lost_rows)):  # fmt: skip
        for item in found:
            print(f"  {kind}: {item}")
    print(tally.line())
    return 0 if not (tally.crashes or tally.false_blocked or tally.lost_rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
