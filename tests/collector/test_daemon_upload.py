"""``probe daemon`` with ``collector.url`` set: after a sweep it sends its outbox to a real
collector (a subprocess on a real PostgreSQL); what it marked acknowledged is all there."""

from __future__ import annotations

import json
from pathlib import Path

from tests.collector.test_collector import counts, new_token, start_collector, stop
from tests.servers.world import World
from tests.test_daemon_end_to_end import (  # noqa: F401 (world: the module's fixture)
    TWO_GROUPS,
    _config,
    _targets,
    daemon,
    rows,
    until,
    world,
)
from tests.test_daemon_end_to_end import stop as stop_daemon


def test_the_daemon_uploads_after_its_sweeps(
    world: World,  # noqa: F811
    postgres_url: str,
    tmp_path: Path,
) -> None:
    collector = start_collector(postgres_url)
    try:
        token = new_token(postgres_url, "home")
        extra = f'\n[collector]\nurl = "{collector.url}"\nupload_every = "1s"\n'
        config = _config(world, tmp_path, TWO_GROUPS + extra)
        db = tmp_path / "r.sqlite"
        env = {"PROBE_COLLECTOR_TOKEN": token}
        with daemon(config, _targets(world, tmp_path), db, env) as (proc, log):
            until(lambda: counts(postgres_url)[0] >= 3, proc=proc)
            assert stop_daemon(proc) == 0, log.read_text()
        assert "uploaded: " in log.read_text()
        marks = rows(db, "SELECT value FROM meta WHERE key LIKE 'uploaded_through:%'")
        assert [json.loads(str(v))["url"] for (v,) in marks] == [collector.url]
        through = json.loads(str(marks[0][0]))["id"]
        acked = rows(db, f"SELECT count(*) FROM measurements WHERE id <= {int(through)}")
        assert acked[0][0] >= 3
        assert counts(postgres_url)[0] == acked[0][0]  # every acknowledged one, once
    finally:
        stop(collector)
