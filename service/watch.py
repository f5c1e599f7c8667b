"""WatchBatch: a batch's state, then its changes, read from the database.

Reading the database (rather than this process's memory) lets any replica
serve a watch, whichever replica runs the batch. A watcher sleeps until some
replica signals "batch changed" (signals.py), or a poll's time passes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from batchd.v1 import batch_pb2
from service import convert, store
from service.database import Database
from service.errors import not_found
from service.models import FINISHED_BATCH_STATUSES
from service.signals import Signals
from service.waiting import POLL_SECONDS


async def watch_batch(
    database: Database, signals: Signals, tenant: str, batch_id: str
) -> AsyncIterator[batch_pb2.WatchBatchResponse]:
    async with database.read() as connection:
        batch = await store.get_batch(connection, tenant, batch_id)
    if batch is None:
        raise not_found("batch", batch_id)
    yield batch_pb2.WatchBatchResponse(batch=convert.batch_message(batch))
    sent: set[str] = set()
    # Times come from the writer's clock, so no replica's clock skew hides an event.
    since = batch.updated_at
    status = batch.status
    while status not in FINISHED_BATCH_STATUSES:
        await signals.wait_for_change(POLL_SECONDS)
        async with database.read() as connection:
            finished = await store.finished_operations_since(connection, tenant, batch_id, since)
            batch = await store.get_batch(connection, tenant, batch_id)
        assert batch is not None
        fresh = [operation for operation in finished if operation.id not in sent]
        for operation in fresh:
            sent.add(operation.id)
            since = max(since, operation.updated_at)
            yield batch_pb2.WatchBatchResponse(
                batch=convert.batch_message(batch),
                batch_operation=convert.operation_message(operation),
            )
        if batch.status != status:
            status = batch.status
            yield batch_pb2.WatchBatchResponse(batch=convert.batch_message(batch))
