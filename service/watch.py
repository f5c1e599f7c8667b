"""WatchBatch: a batch's state, then its changes, read from the database.

Reading the database (rather than this process's memory) lets any replica
serve a watch, whichever replica runs the batch. One reader (WatchFeed) serves
every watch of the process: it sleeps until some replica signals "batch
changed" (signals.py), or a poll's time passes, then reads what changed in all
watched batches in a few statements and hands each watcher its events. So idle
streams cost no queries of their own, however many there are; and a tenant, and
the process, may hold only so many (stream_slots.py, a budget shared with exports),
so that one tenant's streams cannot take what the others' calls need.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchd.v1 import batch_pb2
from service import convert, rate_buckets, store
from service.database import Database, DbConnection
from service.errors import Violation, invalid, not_found
from service.models import FINISHED_BATCH_STATUSES
from service.outcome_counts import batches_with_counts
from service.signals import Signals
from service.stream_slots import StreamSlots
from service.waiting import POLL_SECONDS

log = logging.getLogger(__name__)
# Batches read per statement: the statement binds two values per batch, well
# under SQLite's limit of variables.
BATCHES_PER_READ = 200
Event = batch_pb2.WatchBatchResponse


@dataclass(eq=False)
class _Watcher:
    batch_id: str
    # Times are the stored rows' own (their writer's clock), never this process's.
    # With several replicas, a writer whose clock runs behind the last one seen can
    # still write an event older than `since`: replicas' clocks must stay close.
    since: float
    status: str
    sent: set[str] = field(default_factory=set)
    # Until when the last batch it was sent said it is held back.
    held_back_until: float | None = None
    # Lists of events; None once the batch finished (or is gone); an error the read hit.
    inbox: asyncio.Queue[list[Event] | BaseException | None] = field(default_factory=asyncio.Queue)


class WatchFeed:
    def __init__(self, database: Database, signals: Signals, slots: StreamSlots) -> None:
        self.database = database
        self.signals = signals
        self.slots = slots
        self._watchers: set[_Watcher] = set()
        self._reader: asyncio.Task[None] | None = None

    async def watch(
        self, tenant: str, batch_id: str, resume_after: str = ""
    ) -> AsyncIterator[Event]:
        """The batch as it is now, then an event for each change, until it finishes;
        resuming, first the operations that finished after `resume_after`."""
        with self.slots.hold(tenant, "watch"):
            async with self.database.read() as connection:
                found = await batches_with_counts(connection, [batch_id], tenant)
                if batch_id not in found:
                    raise not_found("batch", batch_id)
                batch, counts = found[batch_id]
                pauses = await rate_buckets.pauses_of(connection, [tenant])
                resumed = await _resumed(connection, batch, resume_after) if resume_after else None
            held_back_until = convert.held_back_until(batch, pauses)
            first = convert.batch_message(batch, counts)
            yield Event(batch=convert.hold_back(first, held_back_until))
            if resumed is not None:
                watcher = resumed
                watcher.held_back_until = held_back_until
                # At once, rather than at the next change: the batch may have finished.
                await self._read_for([watcher])
            elif batch.status in FINISHED_BATCH_STATUSES:
                return
            else:
                watcher = _Watcher(
                    batch_id, batch.updated_at, batch.status, held_back_until=held_back_until
                )
            if watcher.status not in FINISHED_BATCH_STATUSES:
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
            pauses = await rate_buckets.pauses_of(connection, {b.tenant for b in batches.values()})
        events = _SharedEvents(pauses, counts)
        for watcher in watchers:
            _deliver(watcher, batches.get(watcher.batch_id), finished[watcher.batch_id], events)
            if watcher.status in FINISHED_BATCH_STATUSES or watcher.batch_id not in batches:
                self._watchers.discard(watcher)


async def _resumed(connection: DbConnection, batch: Any, resume_after: str) -> _Watcher:
    """A watcher past the operation `resume_after` names (or, named by the batch's own
    id, before every operation), as a stream that delivered it left off."""
    if resume_after == batch.id:
        return _Watcher(batch.id, 0.0, batch.status)
    last = await store.finished_operation(connection, batch.tenant, batch.id, resume_after)
    if last is None:
        raise invalid(
            "watch.resume_after.invalid",
            [
                Violation(
                    "resume_after",
                    "watch.resume_after.invalid",
                    "resume_after must name the batch or one of its finished operations",
                )
            ],
        )
    # Those finished at the same moment, up to it in submitted order, were delivered too.
    sent = await store.finished_at_or_before(connection, batch.id, last.updated_at, last.position)
    return _Watcher(batch.id, last.updated_at, batch.status, sent=set(sent))


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
    held_back_until = events.held_back_until(batch)
    if batch.status != watcher.status or held_back_until != watcher.held_back_until:
        watcher.status = batch.status
        watcher.held_back_until = held_back_until
        fresh.append(events.batch(batch))
    if fresh:
        watcher.inbox.put_nowait(fresh)
    if watcher.status in FINISHED_BATCH_STATUSES:
        watcher.inbox.put_nowait(None)


class _SharedEvents:
    """The events of one read, each built once for all the batch's watchers;
    `pauses` are the upstream pauses of their tenants, as of the read."""

    def __init__(
        self, pauses: dict[str, float], counts: dict[str, batch_pb2.BatchOutcomeCounts]
    ) -> None:
        self._pauses = pauses
        self._counts = counts
        self._batches: dict[str, batch_pb2.Batch] = {}
        self._events: dict[tuple[str, str], Event] = {}

    def held_back_until(self, batch: Any) -> float | None:
        return convert.held_back_until(batch, self._pauses)

    def batch(self, batch: Any) -> Event:
        return self._event(batch, None)

    def operation(self, batch: Any, operation: Any) -> Event:
        return self._event(batch, operation)

    def _event(self, batch: Any, operation: Any) -> Event:
        key = (batch.id, "" if operation is None else operation.id)
        if key not in self._events:
            if batch.id not in self._batches:
                self._batches[batch.id] = convert.hold_back(
                    convert.batch_message(batch, self._counts.get(batch.id)),
                    self.held_back_until(batch),
                )
            message = Event(batch=self._batches[batch.id])
            if operation is not None:
                convert.fill_operation(message.batch_operation, operation)
            self._events[key] = message
        return self._events[key]
