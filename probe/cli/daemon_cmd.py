"""``probe daemon``: sweep groups of services on their own intervals until stopped.

Exit codes: 0 stopped by SIGTERM/SIGINT (what finished is kept), 2 bad config, targets or
database at start, 4 the store failed while running (a full disk), 5 another sweep holds
the database, 6 no consent yet.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from probe.cli.options import add_setting_flags, add_target_flags, setting_flags, settings_from
from probe.cli.run import load_target_list, preload_trust
from probe.cli.upload_cmd import optional_collector
from probe.config import (
    COLLECTOR_KEYS,
    DAEMON_DEFAULTS,
    DAEMON_KEYS,
    KEYS,
    load_collector_settings,
    load_daemon_settings,
)

# The daemon's machinery is imported when it runs, not when the parser is built
# (probe/cli/__init__.py).
if TYPE_CHECKING:
    from probe.classify.fingerprints import Fingerprints
    from probe.daemon.groups import Loaded
    from probe.store.database import Database


def register(sub: Any) -> None:
    """Add the command to the parser."""
    p = sub.add_parser(
        "daemon", help="sweep groups of services on their own intervals until stopped"
    )
    add_target_flags(p)
    add_setting_flags(p, keys=KEYS + DAEMON_KEYS + COLLECTOR_KEYS)
    p.set_defaults(handler=run)


def load(args: argparse.Namespace) -> Loaded:
    """Config, daemon settings and targets, all checked (again at each SIGHUP)."""
    from probe.daemon.groups import Loaded

    settings = settings_from(args, DAEMON_DEFAULTS)
    daemon = load_daemon_settings(setting_flags(args), args.config).daemon
    targets = load_target_list(args.targets, args.category)
    preload_trust(settings)
    return Loaded(settings, daemon, targets)


def _upload_every(args: argparse.Namespace) -> float:
    return load_collector_settings(setting_flags(args), args.config).upload_every


def _uploader(args: argparse.Namespace, database: Database) -> Callable[[], str] | None:
    """What the daemon calls after a sweep to send the outbox (None: no collector)."""
    settings = optional_collector(args)
    if settings is None:
        return None
    from probe.collector.client import Retry, Uploader

    def upload() -> str:
        assert settings.url is not None and settings.token is not None
        uploader = Uploader(settings.url, settings.token, batch_size=settings.batch_size,
                            retry=Retry(attempts=4))  # fmt: skip
        try:
            r = uploader.send(database)
        finally:
            uploader.close()
        return f"{r.sent} measurements to {settings.url} ({r.duplicates} it had already)"

    return upload


def run(args: argparse.Namespace) -> int:
    """Validate everything, open the database (held for the daemon's life), then loop."""
    import asyncio

    from probe.classify.fingerprints import load_bundled
    from probe.config import require_consent
    from probe.engine.sweep import probe_version
    from probe.store.database import open_database
    from probe.store.owner import sweep_lock

    loaded = load(args)
    optional_collector(args)  # checked with the rest: a URL without a token is exit 2 at start
    fingerprints = load_bundled()
    probe_version()  # reads package metadata: before the loop
    require_consent(loaded.settings)  # after the checks: bad input is exit 2 regardless
    db = loaded.settings.storage.db
    # The sweep lock for the daemon's whole life: a `probe run` meanwhile exits 5 naming it.
    with sweep_lock(db, "probe daemon") as lock:
        database = open_database(db, sweep=lock)
        try:
            return asyncio.run(_loop(args, loaded, database, fingerprints))
        finally:
            database.close()


async def _loop(
    args: argparse.Namespace, loaded: Loaded, database: Database, fingerprints: Fingerprints
) -> int:
    import asyncio

    from probe.daemon.notify import Notifier
    from probe.daemon.runner import Daemon
    from probe.store.retention import prune
    from probe.store.writer import AsyncWriter

    storage = loaded.settings.storage
    window, accessible = storage.retention_window, storage.accessible_window
    writer = AsyncWriter(database)

    def pruner() -> str:
        result = prune(database, window, accessible_older_than=accessible, exclusive=True)
        ages = [] if window is None else [f"older than {window.days} days"]
        if accessible is not None and accessible != window:
            ages.append(f"of accessible verdicts older than {accessible.days} days")
        return f"{result.evidence_deleted} evidence records {' or '.join(ages)}"

    try:
        daemon = Daemon(
            loaded, lambda: load(args), writer, fingerprints, Notifier(),
            pruner=pruner if window or accessible else None,
            uploader=_uploader(args, database), upload_every=_upload_every(args),
        )  # fmt: skip
        return await daemon.run()
    finally:
        await asyncio.shield(writer.close())
