"""The central collector as a real subprocess on 127.0.0.1, storing into a real PostgreSQL
(tests/servers/postgres.py), fed by the probe's real SQLite outbox: uploads are idempotent,
nothing acknowledged is lost across a kill -9 or a database restart, and what the
collector refuses it refuses with the field named. Counted in rows."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from probe.collector import outbox, tokens, wire
from probe.collector.client import Retry, Uploader, UploadRefused
from probe.collector.ingest import PAUSE_AFTER_COMMIT_ENV
from probe.store import Database, open_database
from tests.probe.test_store import BLOCKED, OBS, THROTTLED, at, record, run_info
from tests.servers.postgres import PostgresServer, restart_postgres

ROOT = Path(__file__).resolve().parents[2]
PATIENT = Retry(attempts=12, base=0.5, cap=4.0)  # rides out a restart of several seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Collector:
    """A running ``probe collector serve``."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_collector(
    db_url: str, port: int | None = None, *extra: str, env: dict[str, str] | None = None
) -> Collector:
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "probe", "collector", "serve", "--db", db_url,
         "--listen", f"127.0.0.1:{port}", *extra],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"collector exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return Collector(process, port)
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the collector did not start within 60 s")


def stop(c: Collector) -> None:
    if c.process.poll() is None:
        c.process.send_signal(signal.SIGINT)
        try:
            c.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            c.process.kill()
            c.process.wait()


@pytest.fixture
def collector(postgres_url: str) -> Iterator[Collector]:
    c = start_collector(postgres_url)
    yield c
    stop(c)


def new_token(db_url: str, name: str) -> str:
    db = open_database(db_url)
    try:
        return tokens.add(db, name)
    finally:
        db.close()


def probe_db(path: Path, n: int) -> Database:
    """A probe's SQLite database holding one finished run of ``n`` measurements."""
    db = open_database(str(path))
    info = run_info()
    db.begin_run(info)
    for i in range(n):
        verdict = BLOCKED if i % 2 else THROTTLED
        db.record(record(info.run_id, verdict, measured_at=at(i), observations=OBS))
    db.finish_run(info.run_id, "completed", {"inputs": n}, finished_at=at(n + 1))
    return db


def counts(db_url: str) -> tuple[int, int, int]:
    """Measurements, distinct keys (uid), evidence rows on the collector's database."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text(
                "SELECT (SELECT count(*) FROM measurements), "
                "(SELECT count(DISTINCT uid) FROM measurements), (SELECT count(*) FROM evidence)"
            )).one()  # fmt: skip
    finally:
        engine.dispose()
    return int(row[0]), int(row[1]), int(row[2])


def body_of(db: Database, limit: int = 1000) -> bytes:
    batch = outbox.next_batch(db, limit)
    return wire.encode(batch.runs, batch.measurements)


def post(c: Collector, token: str, body: bytes, **headers: str) -> httpx.Response:
    h = {"Authorization": f"Bearer {token}", "Content-Encoding": "gzip", **headers}
    return httpx.post(c.url + wire.PATH, content=body, headers=h, timeout=60)


def test_an_upload_stores_every_measurement_once_and_empties_the_outbox(
    collector: Collector, postgres_url: str, tmp_path: Path
) -> None:
    token = new_token(postgres_url, "probe-a")
    db = probe_db(tmp_path / "p.sqlite", 25)
    uploader = Uploader(collector.url, token, batch_size=10)
    try:
        result = uploader.send(db)
        assert (result.sent, result.stored, result.batches, result.pending) == (25, 25, 3, 0)
        assert counts(postgres_url) == (25, 25, 25)
        again = uploader.send(db)
        assert again.sent == 0
    finally:
        uploader.close()
        db.close()
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT uploaded_by, status FROM runs")).all()
    engine.dispose()
    assert runs == [("probe-a", "completed")]


def test_a_duplicate_upload_adds_nothing(
    collector: Collector, postgres_url: str, tmp_path: Path
) -> None:
    token = new_token(postgres_url, "probe-a")
    db = probe_db(tmp_path / "p.sqlite", 8)
    body = body_of(db)
    db.close()
    assert post(collector, token, body).json() == {"stored": 8, "duplicates": 0}
    assert post(collector, token, body).json() == {"stored": 0, "duplicates": 8}
    assert counts(postgres_url) == (8, 8, 8)


def test_two_probes_with_the_same_ids_do_not_collide(
    collector: Collector, postgres_url: str, tmp_path: Path
) -> None:
    """A copied database uploaded under two tokens: each token's rows are its own."""
    a, b = new_token(postgres_url, "probe-a"), new_token(postgres_url, "probe-b")
    db = probe_db(tmp_path / "p.sqlite", 6)
    body = body_of(db)
    db.close()
    assert post(collector, a, body).json()["stored"] == 6
    assert post(collector, b, body).json()["stored"] == 6
    assert counts(postgres_url) == (12, 12, 12)
    # probe upload --delete-mine: b's rows go, a's stay.
    uploader = Uploader(collector.url, b)
    try:
        assert uploader.delete_mine() == 6
    finally:
        uploader.close()
    assert counts(postgres_url) == (6, 6, 6)


def test_a_revoked_token_is_refused_and_probe_upload_exits_2(
    collector: Collector, postgres_url: str, tmp_path: Path
) -> None:
    token = new_token(postgres_url, "probe-a")
    revoke = subprocess.run(
        [sys.executable, "-m", "probe", "collector", "token", "revoke", "probe-a",
         "--db", postgres_url],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
    )  # fmt: skip
    assert revoke.returncode == 0, revoke.stderr
    db = probe_db(tmp_path / "p.sqlite", 3)
    db.close()
    assert post(collector, token, b"").status_code == 401
    done = subprocess.run(
        [sys.executable, "-m", "probe", "upload", "--db", str(tmp_path / "p.sqlite"),
         "--collector", collector.url],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "PROBE_COLLECTOR_TOKEN": token},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "401" in done.stderr and "revoked" in done.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "probe", "collector", "token", "list", "--db", postgres_url],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
    )  # fmt: skip
    assert "probe-a" in listed.stdout and "revoked" in listed.stdout
    assert token not in listed.stdout
    assert counts(postgres_url) == (0, 0, 0)


def test_a_malformed_upload_is_400_naming_the_field(
    collector: Collector, postgres_url: str, tmp_path: Path
) -> None:
    token = new_token(postgres_url, "probe-a")
    db = probe_db(tmp_path / "p.sqlite", 3)
    batch = outbox.next_batch(db, 10)
    db.close()
    batch.measurements[1]["verdict"] = "maybe"
    answer = post(collector, token, wire.encode(batch.runs, batch.measurements))
    assert answer.status_code == 400
    assert answer.json()["field"] == "measurements[1].verdict"
    assert post(collector, token, gzip.compress(b"{not json")).status_code == 400
    assert counts(postgres_url) == (0, 0, 0)  # nothing half-written


def test_a_huge_upload_is_413(postgres_url: str) -> None:
    c = start_collector(postgres_url, None, "--max-body", "100000")
    try:
        token = new_token(postgres_url, "probe-a")
        answer = post(c, token, os.urandom(300_000))
        assert answer.status_code == 413
        # A small body that inflates past the limit (64 MiB): 413 too, not a swollen process.
        bomb = gzip.compress(json.dumps({"version": 1, "pad": " " * (70 << 20)}).encode())
        assert len(bomb) < 100_000
        assert post(c, token, bomb).status_code == 413
    finally:
        stop(c)


def test_a_trickled_body_is_cut_off(postgres_url: str) -> None:
    c = start_collector(postgres_url, None, "--read-timeout", "2")
    try:
        token = new_token(postgres_url, "probe-a")
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", c.port), timeout=30) as s:
            s.sendall(
                f"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                "Content-Encoding: gzip\r\nContent-Length: 1000\r\n\r\n".encode()
            )
            answer = b""
            for _ in range(60):  # a byte every half second: 30 s if never cut off
                try:
                    s.sendall(b"x")
                except OSError:
                    break
                s.settimeout(0.5)
                try:
                    chunk = s.recv(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
        elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert elapsed < 15  # the 2 s deadline, with a wide margin for a busy machine
    finally:
        stop(c)


def test_a_kill_between_commit_and_answer_loses_and_duplicates_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    token = new_token(postgres_url, "probe-a")
    port = free_port()
    first = start_collector(postgres_url, port, env={PAUSE_AFTER_COMMIT_ENV: "60"})
    db = probe_db(tmp_path / "p.sqlite", 20)
    uploader = Uploader(first.url, token, batch_size=20, retry=PATIENT)
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(uploader.send(db)))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while counts(postgres_url)[0] < 20:  # committed; the answer is 60 s away
            assert time.monotonic() < deadline
            time.sleep(0.1)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        assert outbox.pending_count(db, first.url) == 20  # no answer came: nothing marked
        second = start_collector(postgres_url, port)
        try:
            worker.join(timeout=120)
            assert not worker.is_alive()
        finally:
            stop(second)
    finally:
        worker.join(timeout=120)
        uploader.close()
    result = outcome[0]
    assert getattr(result, "sent") == 20 and getattr(result, "duplicates") == 20  # noqa: B009
    assert outbox.pending_count(db, first.url) == 0
    db.close()
    assert counts(postgres_url) == (20, 20, 20)


def test_postgresql_restarted_mid_upload_loses_and_duplicates_nothing(
    collector: Collector, postgres_url: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    token = new_token(postgres_url, "probe-a")
    db = probe_db(tmp_path / "p.sqlite", 300)
    uploader = Uploader(collector.url, token, batch_size=5, retry=PATIENT)
    outcome: list[object] = []
    failure: list[BaseException] = []

    def send() -> None:
        try:
            outcome.append(uploader.send(db))
        except BaseException as exc:  # reported below
            failure.append(exc)

    worker = threading.Thread(target=send)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while counts(postgres_url)[0] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        restart_postgres(postgres_server)
        worker.join(timeout=180)
        assert not worker.is_alive() and not failure, failure
    finally:
        worker.join(timeout=180)
        uploader.close()
    assert outbox.pending_count(db, collector.url) == 0
    db.close()
    assert counts(postgres_url) == (300, 300, 300)


def test_refused_for_good_is_not_retried(
    collector: Collector, postgres_url: str, tmp_path: Path
) -> None:
    db = probe_db(tmp_path / "p.sqlite", 2)
    uploader = Uploader(collector.url, "not-a-token", retry=PATIENT)
    try:
        started = time.monotonic()
        with pytest.raises(UploadRefused, match="401"):
            uploader.send(db)
        assert time.monotonic() - started < 10
    finally:
        uploader.close()
        db.close()


def test_two_collectors_share_one_database_under_the_same_uploads(
    postgres_url: str, tmp_path: Path
) -> None:
    """The same batches sent to two instances at once, each several times: stored once."""
    one, two = start_collector(postgres_url), start_collector(postgres_url)
    try:
        token = new_token(postgres_url, "probe-a")
        db = probe_db(tmp_path / "p.sqlite", 40)
        bodies = [body_of(db, 40)]
        db.close()
        answers: list[dict[str, int]] = []

        def send(c: Collector) -> None:
            for _ in range(3):
                answers.append(post(c, token, bodies[0]).json())

        workers = [threading.Thread(target=send, args=(c,)) for c in (one, two, one, two)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        assert len(answers) == 12
        assert sum(a["stored"] for a in answers) == 40
        assert sum(a["duplicates"] for a in answers) == 11 * 40
        assert counts(postgres_url) == (40, 40, 40)
    finally:
        stop(one)
        stop(two)
