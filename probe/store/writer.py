"""The store as the asyncio sweep sees it: every database call on one worker thread.

A synchronous SQLite write inside a coroutine would stall every measurement in flight and
skew their timings, so the sweep never calls Database itself. AsyncWriter hands each call to
a single dedicated thread: writes run one at a time, in the order they were submitted, and
SQLite connections are opened, used and closed on that thread only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError

from probe.classify.evidence import PastRate
from probe.classify.verdict import Location, MeasurementRecord, RunInfo
from probe.store import budgets, daemon_state
from probe.store.database import Database

T = TypeVar("T")

# How long a record waits for others to share its transaction, and how many may share one.
# A sweep stores a few hundred records a second at most, so this makes a transaction of
# tens of records; a crash (kill -9) loses no more than the records of this last wait.
BATCH_LINGER = 0.05
BATCH_MAX = 64


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
        # Records waiting to be written together (None: none wait), the future their callers
        # await, and the timer that sends them to the worker. Only the loop touches them.
        self._batch: list[MeasurementRecord] | None = None
        self._batch_done: asyncio.Future[list[int | Exception]] | None = None
        self._batch_timer: asyncio.TimerHandle | None = None

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
        self._send_batch()  # records submitted before this call are written before it
        return self._queue(fn, *args)

    def _queue(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
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

        Records are written in batches, one transaction each: a record waits up to
        BATCH_LINGER for others to join it (BATCH_MAX at most). A transaction per record
        cost more CPU than the record's own rows, most of it in the commit (issue 13). Any
        other call sends the waiting batch first, so writes keep the order of submission.
        A batch that fails is written again record by record, so the error reaches only the
        callers whose records are not stored (_write_batch).
        """
        if self._closed:
            raise RuntimeError("AsyncWriter is closed")
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch, self._batch_done = [], loop.create_future()
            self._batch_timer = loop.call_later(BATCH_LINGER, self._send_batch)
        batch, done = self._batch, self._batch_done
        assert done is not None
        batch.append(rec)
        index = len(batch) - 1
        if len(batch) >= BATCH_MAX:
            self._send_batch()
        # Shielded: a caller cancelled (Ctrl-C, a deadline) does not take its record out.
        result = (await asyncio.shield(done))[index]
        if isinstance(result, Exception):
            raise result
        return result

    def _send_batch(self) -> None:
        """Queue the waiting records' write on the worker (if any wait)."""
        batch, done = self._batch, self._batch_done
        if batch is None or done is None:
            return
        if self._batch_timer is not None:
            self._batch_timer.cancel()
        self._batch = self._batch_done = self._batch_timer = None
        write = self._queue(self._write_batch, batch)

        def settle(finished: asyncio.Future[list[int | Exception]]) -> None:
            if done.cancelled():
                return
            if finished.cancelled():
                done.cancel()
            elif (exc := finished.exception()) is not None:
                done.set_exception(exc)
            else:
                done.set_result(finished.result())

        write.add_done_callback(settle)
        done.add_done_callback(_retrieve)  # the same failure its callers see, once

    def _write_batch(self, batch: list[MeasurementRecord]) -> list[int | Exception]:
        """On the worker: the batch in one transaction, or, should that fail, each record in
        its own; each record's id, or the error that kept it out."""
        try:
            return list(self._db.record_many(batch))
        except Exception:
            if len(batch) == 1:
                raise
        # A record the batch cannot hold (one bad row, the disk filling up halfway) must not
        # take the others down with it: they are stored as they would be one at a time.
        results: list[int | Exception] = []
        broken: Exception | None = None
        for rec in batch:
            if broken is not None:
                results.append(broken)
                continue
            try:
                results.append(self._db.record(rec))
            except Exception as exc:  # handed to this record's caller, who raises it
                results.append(exc)
                if isinstance(exc.__cause__, OperationalError):
                    # The database failed, not this record (full, locked past the busy
                    # timeout): the others would wait and fail the same way.
                    broken = exc
        return results

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
        self._send_batch()  # the records still waiting to join a batch
        self._closed = True  # then, so no write can queue up behind the close
        loop = asyncio.get_running_loop()
        try:
            await asyncio.shield(loop.run_in_executor(self._executor, self._db.close))
        finally:
            # Nothing is queued any more, so the thread ends at once; not waiting keeps the
            # join out of the event loop.
            self._executor.shutdown(wait=False)
