"""The probe's outbox as a high-water mark per collector: the ids a row goes out under are
the same at every upload of the same database (the collector's idempotency key), and the
mark moves only after a 2xx. Against a scripted HTTP server on 127.0.0.1 that records what
it was sent, a real collector on a real PostgreSQL, and a probe storing into PostgreSQL."""

from __future__ import annotations

import gzip
import http.server
import json
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from probe.collector import outbox
from probe.collector.client import CollectorUnavailable, Retry, Uploader, UploadRefused
from probe.store import open_database, partitions
from probe.store.models import Measurement
from probe.store.rows import evidence_data, measurement_values
from tests.collector.test_collector import (  # noqa: F401 (collector: a fixture)
    Collector,
    collector,
    counts,
    new_token,
    probe_db,
)
from tests.probe.test_store import BLOCKED, OBS, at, record, run_info

QUICK = Retry(attempts=2, base=0.01, cap=0.05)


class Scripted(http.server.ThreadingHTTPServer):
    """Answers POSTs with the next status of ``script`` (the last one for ever after) and
    keeps every body it was sent, decoded."""

    def __init__(self, script: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script, self.bodies = list(script), []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def keys(self, i: int) -> list[tuple[str, int]]:
        """The (run_id, id) of every measurement of the i-th body."""
        return [(m["run_id"], m["id"]) for m in self.bodies[i]["measurements"]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Scripted

    def do_POST(self) -> None:
        body = json.loads(gzip.decompress(self.rfile.read(int(self.headers["Content-Length"]))))
        with self.server.lock:
            self.server.bodies.append(body)
            status = (
                self.server.script.pop(0) if len(self.server.script) > 1 else self.server.script[0]
            )
        n = len(body["measurements"])
        answer = json.dumps({"stored": n, "duplicates": 0} if status == 200 else {"error": "no"})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[Scripted] = []

    def start(*script: int) -> Scripted:
        server = Scripted(list(script))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def local_keys(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        return [(str(r), int(i)) for r, i in conn.execute("SELECT run_id, id FROM measurements")]


def send(url: str, db: Any, batch: int = 4, retry: Retry = QUICK) -> Any:
    uploader = Uploader(url, "t", batch_size=batch, retry=retry)
    try:
        return uploader.send(db)
    finally:
        uploader.close()


def test_a_rows_ids_on_the_wire_are_the_same_at_every_upload(scripted: Any, tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    db = probe_db(path, 6)
    failing = scripted(503)
    with pytest.raises(CollectorUnavailable):
        send(failing.url, db, batch=10)
    assert outbox.mark(db, failing.url) == 0 and outbox.pending_count(db, failing.url) == 6
    db.close()
    # The same database, reopened, and a copy of it: sent under the very same pairs.
    shutil.copy(path, tmp_path / "copy.sqlite")
    ok = scripted(200)
    for p in (path, tmp_path / "copy.sqlite"):
        again = open_database(str(p))
        try:
            assert send(ok.url, again, batch=10).sent == 6
        finally:
            again.close()
    wanted = local_keys(path)
    assert len(set(wanted)) == 6 and all(len(r) == 32 for r, _ in wanted)
    assert failing.keys(0) == failing.keys(1) == ok.keys(0) == ok.keys(1) == wanted
    assert "uid" not in failing.bodies[0]["measurements"][0]
    with sqlite3.connect(path) as conn:  # nothing per row on the probe: uid stays NULL
        nulls = conn.execute("SELECT count(*) FROM measurements WHERE uid IS NULL").fetchone()
    assert nulls == (6,)


def test_the_mark_moves_only_after_a_2xx(scripted: Any, tmp_path: Path) -> None:
    db = probe_db(tmp_path / "p.sqlite", 10)
    ids = [i for _, i in local_keys(tmp_path / "p.sqlite")]
    try:
        # The first batch acknowledged, then the collector fails through every retry.
        flaky = scripted(200, 503)
        with pytest.raises(CollectorUnavailable):
            send(flaky.url, db)
        assert outbox.mark(db, flaky.url) == ids[3]
        assert outbox.pending_count(db, flaky.url) == 6
        # Refused for good (a 400, a 413 for a single row): nothing more is marked.
        for status, batch in ((400, 4), (413, 1)):
            refusing = scripted(status)
            with pytest.raises(UploadRefused):
                send(refusing.url, db, batch=batch)
            assert outbox.mark(db, refusing.url) == 0
        # Resumed where it stopped, in id order; the same collector with a trailing slash.
        flaky.script = [200]
        assert send(flaky.url + "/", db).sent == 6
        assert [i for n in (-2, -1) for _, i in flaky.keys(n)] == ids[4:]
        assert outbox.mark(db, flaky.url) == ids[-1] and outbox.pending_count(db, flaky.url) == 0
        # Another collector has a mark of its own: it is sent everything.
        other = scripted(200)
        assert send(other.url, db, batch=100).sent == 10
        assert outbox.mark(db, flaky.url) == ids[-1]
        # A mark never goes down (a slower upload finishing after a faster one).
        outbox.advance(db, other.url, ids[2])
        assert outbox.mark(db, other.url) == ids[-1]
    finally:
        db.close()


def test_a_lost_mark_resends_under_the_same_keys_and_stores_nothing_twice(
    collector: Collector,  # noqa: F811
    postgres_url: str,
    tmp_path: Path,
) -> None:
    token = new_token(postgres_url, "probe-a")
    path = tmp_path / "p.sqlite"
    db = probe_db(path, 12)
    uploader = Uploader(collector.url, token, batch_size=5)
    try:
        assert uploader.send(db).stored == 12
        with sqlite3.connect(path) as conn:  # the mark lost: an older backup's meta, say
            conn.execute("DELETE FROM meta WHERE key LIKE 'uploaded_through:%'")
        again = uploader.send(db)
        assert (again.sent, again.stored, again.duplicates, again.pending) == (12, 0, 12, 0)
    finally:
        uploader.close()
        db.close()
    assert counts(postgres_url) == (12, 12, 12)


def test_on_postgresql_a_batch_waits_for_a_lower_id_still_uncommitted(postgres_url: str) -> None:
    """A sequence hands out ids before commit: the outbox must not pass an id still open."""
    db = open_database(postgres_url)
    info = run_info()
    try:
        db.begin_run(info)
        rec = record(info.run_id, BLOCKED, observations=OBS)
        # The month's partitions before the open transaction, as Database.record makes them
        # (it would wait for this very transaction to make them inside it).
        partitions.ensure(db.engine, [rec.measured_at])
        with db.engine.connect() as open_tx:
            # The id is taken, not committed.
            key = open_tx.execute(insert(Measurement), measurement_values(rec)).inserted_primary_key
            assert key is not None
            low_id = int(key[0])
            open_tx.execute(
                partitions.evidence_insert(
                    "postgresql", low_id, rec.measured_at, evidence_data(rec)
                )
            )
            high = db.record(record(info.run_id, BLOCKED, measured_at=at(1)))
            assert high > low_id
            got: list[outbox.Batch] = []
            reader = threading.Thread(target=lambda: got.append(outbox.next_batch(db, 10)))
            reader.start()
            reader.join(timeout=1.0)
            open_tx.commit()
        reader.join(timeout=60)
        assert not reader.is_alive()
        assert got[0].ids == (low_id, high)  # never (high,) alone, which would skip low
        outbox.advance(db, "http://c", high)
        assert outbox.pending_count(db, "http://c") == 0
    finally:
        db.close()
