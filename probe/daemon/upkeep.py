"""What the daemon does between two sweeps: apply the retention window, send the outbox.

Both run off the event loop (they read and write the whole database, or the network), each at
most as often as it is due, and never once the daemon is stopping. A failed upload is logged
and the outbox keeps what was not acknowledged; the collector's trouble never stops the
measuring. A failed prune is the store's failure (a StoreError stops the daemon, exit 4).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from probe.daemon.notify import Notifier

PRUNE_EVERY = 24 * 3600.0  # seconds between two applications of storage.retention


class Upkeep:
    """The daemon's chores between sweeps, each with its own period."""

    def __init__(
        self,
        notifier: Notifier,
        log: Callable[[str], None],
        pruner: Callable[[], object] | None = None,
        uploader: Callable[[], object] | None = None,
        upload_every: float = 300.0,
    ) -> None:
        self.notifier = notifier
        self.log = log
        # storage.retention, applied at most once a day (the first time after the first
        # sweep): a daemon left running for months stays within its window.
        self.pruner = pruner
        self.pruned_at: float | None = None
        # collector.url: the outbox sent after a sweep, at most every upload_every seconds.
        self.uploader = uploader
        self.upload_every = upload_every
        self.uploaded_at: float | None = None

    async def after_sweep(self, status_line: Callable[[], str]) -> None:
        """Prune if a day has passed since, then upload if upload_every has."""
        await self._prune(status_line)
        await self._upload(status_line)

    async def _prune(self, status_line: Callable[[], str]) -> None:
        if self.pruner is None or not _due(self.pruned_at, PRUNE_EVERY):
            return
        self.pruned_at = time.monotonic()
        self.notifier.status("pruning evidence past storage.retention")
        self.log(f"pruned: {await asyncio.to_thread(self.pruner)}")
        self.notifier.status(status_line())

    async def _upload(self, status_line: Callable[[], str]) -> None:
        if self.uploader is None or not _due(self.uploaded_at, self.upload_every):
            return
        self.uploaded_at = time.monotonic()
        self.notifier.status("uploading to the collector")
        try:
            self.log(f"uploaded: {await asyncio.to_thread(self.uploader)}")
        except Exception as exc:  # the collector's trouble must not stop the measuring
            self.log(f"upload failed (kept for the next one): {exc}")
        self.notifier.status(status_line())


def _due(last: float | None, every: float) -> bool:
    """Whether a chore done at monotonic ``last`` (None: never) is due again."""
    return last is None or time.monotonic() - last >= every
