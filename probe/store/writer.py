"""The store as the asyncio sweep sees it: every database call on one worker thread.

A synchronous SQLite write inside a coroutine would stall every measurement in flight and
skew their timings, so the sweep never calls Database itself. AsyncWriter hands each call to
a single dedicated thread: writes run one at a time, in the order they were submitted, and
SQLite connections are opened, used and closed on that thread only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from probe.classify.evidence import PastRate
from probe.classify.verdict import Location, MeasurementRecord, RunInfo
from probe.store import budgets, daemon_state
from probe.store.database import Database

T = TypeVar("T")


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a finished future's exception as seen (its caller may have gone)."""
    if not future.cancelled():
        future.exception()


class AsyncWriter:
    """Awaitable front of a Database; owns it from construction and closes it in close()."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # One worker: FIFO order of writes, and SQLite connections that never change thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-store")
        self._closed = False
        # Records waiting for a write already queued (None: none is); the worker takes them
        # all at once. Guarded by the lock: appended on the loop, taken on the worker.
        self._batch: list[MeasurementRecord] | None = None
        self._batch_write: asyncio.Future[list[int]] | None = None
        self._lock = threading.Lock()

    @property
    def database(self) -> Database:
        """The wrapped Database (call it only from outside the event loop)."""
        return self._db

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(*args) on the worker thread and await its result."""
        # Shielded: a sweep cancelled (Ctrl-C, timeout) while a write is queued must not drop
        # the write; the measurement was made and its record is kept.
        return await asyncio.shield(self._submit(fn, *args))

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue fn(*args) on the worker thread now (call order is write order)."""
        if self._closed:
            raise RuntimeError("AsyncWriter is closed")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, fn, *args)
        # A caller cancelled while its write is queued no longer awaits it; should the write
        # then fail, asyncio would print "Future exception was never retrieved" with a
        # traceback for each one (dozens on a full disk). The first failure a caller does
        # see ends the sweep and is reported once; these are the same failure again.
        future.add_done_callback(_retrieve)
        return future

    async def begin_run(self, info: RunInfo) -> None:
        """Record that a sweep started."""
        await self._call(self._db.begin_run, info)

    async def set_location(self, run_id: str, location: Location) -> None:
        """Record where the sweep measured (found after the run began)."""
        await self._call(self._db.set_location, run_id, location)

    async def record(self, rec: MeasurementRecord) -> int:
        """Store one measurement and its evidence; return its id.

        A record that arrives while an earlier one's write is still queued joins it: the
        worker then writes all of them in one transaction (a transaction per record cost
        about as much CPU as the record's own rows). So a record may be written before a
        call queued after that write (never before one queued before it).
        """
        with self._lock:
            batch, write = self._batch, self._batch_write
            if batch is not None:  # queued, not yet taken by the worker: join it
                batch.append(rec)
            else:
                batch = self._batch = [rec]
            index = len(batch) - 1
        if index == 0:
            write = self._submit(self._write_batch, batch)
            with self._lock:
                if self._batch is batch:  # else the worker has taken it already
                    self._batch_write = write
        # Only the loop calls record, with no await between a batch and its write: a batch
        # found queued has its write.
        assert write is not None
        return (await asyncio.shield(write))[index]

    def _write_batch(self, batch: list[MeasurementRecord]) -> list[int]:
        """On the worker: the records queued so far, in one transaction; no more may join."""
        with self._lock:
            if self._batch is batch:
                self._batch, self._batch_write = None, None
            taken = list(batch)
        return self._db.record_many(taken)

    async def throughput_bytes_since(self, since: dt.datetime, vantage_name: str | None) -> int:
        """Throughput bytes recorded since ``since`` at this declared vantage."""
        return await self._call(budgets.bytes_since, self._db, since, vantage_name)

    async def past_rates(
        self, inputs: list[str], vantage_name: str | None, since: dt.datetime
    ) -> dict[str, tuple[PastRate, ...]]:
        """Each input's earlier timed tests at this declared vantage, newest first."""
        return await self._call(budgets.past_rates, self._db, inputs, vantage_name, since)

    async def finish_run(
        self, run_id: str, status: str, counts: Mapping[str, Any] | None = None
    ) -> None:
        """Record how the sweep ended."""
        await self._call(self._db.finish_run, run_id, status, counts)

    async def save_groups(self, rows: list[daemon_state.GroupRow]) -> None:
        """The daemon's schedule as it stands (probe status reads it)."""
        await self._call(daemon_state.save_groups, self._db, rows)

    async def record_sweep(self, row: daemon_state.SweepRow) -> None:
        """A daemon sweep's group, plan and network."""
        await self._call(daemon_state.record_sweep, self._db, row)

    async def open_outage(
        self, vantage: str | None, at: dt.datetime, detected_by: str, network: str | None
    ) -> bool:
        """Connectivity lost at ``at`` (unless an outage is open already)."""
        return await self._call(
            daemon_state.open_outage, self._db, vantage, at, detected_by, network
        )

    async def close_outages(self, vantage: str | None, at: dt.datetime) -> int:
        """Connectivity back at ``at``: end the vantage's open outages."""
        return await self._call(daemon_state.close_outages, self._db, vantage, at)

    async def close(self) -> None:
        """Wait for queued writes, close the database on its thread, and stop the thread."""
        if self._closed:
            return
        self._closed = True  # first, so no write can queue up behind the close
        loop = asyncio.get_running_loop()
        try:
            await asyncio.shield(loop.run_in_executor(self._executor, self._db.close))
        finally:
            # Nothing is queued any more, so the thread ends at once; not waiting keeps the
            # join out of the event loop.
            self._executor.shutdown(wait=False)
