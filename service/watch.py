"""WatchBatch: a batch's state, then its changes, read from the database.

Reading the database (rather than this process's memory) lets any replica
serve a watch, whichever replica runs the batch. One reader (WatchFeed) serves
every watch of the process: it sleeps until some replica signals "batch
changed" (signals.py), or a poll's time passes, then reads what changed in all
watched batches in a few statements and hands each watcher its events. So idle
streams cost no queries of their own, however many there are; and a tenant, and
the process, may hold only so many (WatchLimits), so that one tenant's streams
cannot take what the others' calls need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchd.v1 import batch_pb2
from service import convert, store
from service.database import Database
from service.errors import RetryLater, not_found
from service.models import FINISHED_BATCH_STATUSES
from service.outcome_counts import batches_with_counts
from service.signals import Signals
from service.waiting import POLL_SECONDS

log = logging.getLogger(__name__)
# Batches read per statement: the statement binds two values per batch, well
# under SQLite's limit of variables.
BATCHES_PER_READ = 200
# Streams end when their batches finish: a refused client may look again soon.
RETRY_AFTER_SECONDS = 5.0
Event = batch_pb2.WatchBatchResponse


@dataclass(frozen=True)
class WatchLimits:
    per_tenant: int
    total: int


@dataclass(eq=False)
class _Watcher:
    batch_id: str
    # Times are the stored rows' own (their writer's clock), never this process's.
    # With several replicas, a writer whose clock runs behind the last one seen can
    # still write an event older than `since`: replicas' clocks must stay close.
    since: float
    status: str
    sent: set[str] = field(default_factory=set)
    # Lists of events; None once the batch finished (or is gone); an error the read hit.
    inbox: asyncio.Queue[list[Event] | BaseException | None] = field(default_factory=asyncio.Queue)


class WatchFeed:
    def __init__(self, database: Database, signals: Signals, limits: WatchLimits) -> None:
        self.database = database
        self.signals = signals
        self.limits = limits
        self._watchers: set[_Watcher] = set()
        self._by_tenant: Counter[str] = Counter()
        self._reader: asyncio.Task[None] | None = None

    async def watch(self, tenant: str, batch_id: str) -> AsyncIterator[Event]:
        """The batch as it is now, then an event for each change, until it finishes."""
        with self._slot(tenant):
            async with self.database.read() as connection:
                found = await batches_with_counts(connection, [batch_id], tenant)
            if batch_id not in found:
                raise not_found("batch", batch_id)
            batch, counts = found[batch_id]
            yield Event(batch=convert.batch_message(batch, counts))
            if batch.status in FINISHED_BATCH_STATUSES:
                return
            watcher = _Watcher(batch_id, batch.updated_at, batch.status)
            self._watchers.add(watcher)
            self._start_reading()
            try:
                while (events := await watcher.inbox.get()) is not None:
                    if isinstance(events, BaseException):
                        raise events
                    for event in events:
                        yield event
            finally:
                self._watchers.discard(watcher)
                if not self._watchers and self._reader is not None:
                    self._reader.cancel()  # nothing to read for: no task outlives the streams

    @contextlib.contextmanager
    def _slot(self, tenant: str) -> Iterator[None]:
        """Holds one of the tenant's streams, or refuses the watch."""
        if self._by_tenant.total() >= self.limits.total:
            raise _too_many("this server holds as many event streams as it may")
        if self._by_tenant[tenant] >= self.limits.per_tenant:
            raise _too_many(f"at most {self.limits.per_tenant} event streams per account")
        self._by_tenant[tenant] += 1
        try:
            yield
        finally:
            self._by_tenant[tenant] -= 1
            if not self._by_tenant[tenant]:
                del self._by_tenant[tenant]

    def _start_reading(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_while_watched(), name="watch-feed")

    async def _read_while_watched(self) -> None:
        while self._watchers:
            await self.signals.wait_for_change(POLL_SECONDS)
            watchers = list(self._watchers)
            try:
                await self._read_for(watchers)
            except Exception as error:
                # Each stream ends with it, as the client's own read would have.
                for watcher in watchers:
                    self._watchers.discard(watcher)
                    watcher.inbox.put_nowait(error)

    async def _read_for(self, watchers: Sequence[_Watcher]) -> None:
        since_by_batch: dict[str, float] = {}
        for watcher in watchers:
            since = since_by_batch.get(watcher.batch_id, watcher.since)
            since_by_batch[watcher.batch_id] = min(since, watcher.since)
        batch_ids = list(since_by_batch)
        batches: dict[str, Any] = {}
        finished: dict[str, list[Any]] = {batch_id: [] for batch_id in batch_ids}
        counts: dict[str, batch_pb2.BatchOutcomeCounts] = {}
        async with self.database.read() as connection:
            for start in range(0, len(batch_ids), BATCHES_PER_READ):
                chunk = batch_ids[start : start + BATCHES_PER_READ]
                # Each batch with its counts, in one statement: they agree.
                for batch_id, (row, counted) in (
                    await batches_with_counts(connection, chunk)
                ).items():
                    batches[batch_id] = row
                    counts[batch_id] = counted
                cursors = {batch_id: since_by_batch[batch_id] for batch_id in chunk}
                for row in await store.finished_operations_of(connection, cursors):
                    finished[row.batch_id].append(row)
        events = _SharedEvents(counts)
        for watcher in watchers:
            _deliver(watcher, batches.get(watcher.batch_id), finished[watcher.batch_id], events)
            if watcher.status in FINISHED_BATCH_STATUSES or watcher.batch_id not in batches:
                self._watchers.discard(watcher)


def _deliver(watcher: _Watcher, batch: Any, finished: list[Any], events: _SharedEvents) -> None:
    if batch is None:  # deleted while watched
        watcher.inbox.put_nowait(None)
        return
    fresh: list[Event] = []
    for operation in finished:
        if operation.updated_at < watcher.since or operation.id in watcher.sent:
            continue
        watcher.sent.add(operation.id)
        watcher.since = max(watcher.since, operation.updated_at)
        fresh.append(events.operation(batch, operation))
    if batch.status != watcher.status:
        watcher.status = batch.status
        fresh.append(events.batch(batch))
    if fresh:
        watcher.inbox.put_nowait(fresh)
    if watcher.status in FINISHED_BATCH_STATUSES:
        watcher.inbox.put_nowait(None)


class _SharedEvents:
    """The events of one read, each built once for all the batch's watchers."""

    def __init__(self, counts: dict[str, batch_pb2.BatchOutcomeCounts]) -> None:
        self._counts = counts
        self._batches: dict[str, batch_pb2.Batch] = {}
        self._events: dict[tuple[str, str], Event] = {}

    def batch(self, batch: Any) -> Event:
        return self._event(batch, None)

    def operation(self, batch: Any, operation: Any) -> Event:
        return self._event(batch, operation)

    def _event(self, batch: Any, operation: Any) -> Event:
        key = (batch.id, "" if operation is None else operation.id)
        if key not in self._events:
            if batch.id not in self._batches:
                self._batches[batch.id] = convert.batch_message(batch, self._counts.get(batch.id))
            message = Event(batch=self._batches[batch.id])
            if operation is not None:
                message.batch_operation.CopyFrom(convert.operation_message(operation))
            self._events[key] = message
        return self._events[key]


def _too_many(message: str) -> RetryLater:
    return RetryLater("watch.too_many", f"Too many event streams: {message}", RETRY_AFTER_SECONDS)
