"""One reader serves every event stream of a process: idle streams cost no queries of
their own, however many there are (counted in-process, on the service's own code)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import event

from batchd.v1 import batch_pb2
from service.auth import Caller
from service.batch_commands import create_batch
from service.credentials import sealer_from_settings
from service.database import open_database
from service.migrate import upgrade
from service.signals import Signals
from service.stream_slots import StreamLimits, StreamSlots
from service.validation import BatchLimits
from service.waiting import POLL_SECONDS
from service.watch import WatchFeed

STREAMS = 200
WATCHED_SECONDS = 2.0


async def test_idle_streams_share_one_reader(database_url: str) -> None:
    database = open_database(database_url)
    signals = Signals(database_url)
    try:
        if database.is_sqlite:
            await upgrade(database)
        caller = Caller("tenant-a", "Bearer token-a")
        request = batch_pb2.CreateBatchRequest(
            batch=batch_pb2.Batch(
                batch_operations=[
                    batch_pb2.BatchOperation(http_method=batch_pb2.HTTP_METHOD_GET, path="/x")
                ]
            )
        )
        sealer = sealer_from_settings("", dev_mode=True)
        batch_ids = []
        for _ in range(STREAMS // 4):  # four streams on each batch
            created = await create_batch(
                database, caller, request, sealer, BatchLimits(10, 1 << 20, 16)
            )
            batch_ids.append(created.batch.id)
        feed = WatchFeed(database, signals, StreamSlots(StreamLimits(STREAMS, STREAMS)))
        opened = asyncio.Event()
        first_events = 0

        async def watch(batch_id: str) -> None:
            nonlocal first_events
            async for _ in feed.watch(caller.tenant, batch_id):
                first_events += 1
                if first_events == STREAMS:
                    opened.set()

        streams = [
            asyncio.create_task(watch(batch_ids[n % len(batch_ids)])) for n in range(STREAMS)
        ]
        await asyncio.wait_for(opened.wait(), 30)
        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        event.listen(database.engine.sync_engine, "before_cursor_execute", count)
        started = time.monotonic()
        await asyncio.sleep(WATCHED_SECONDS)
        reads = (time.monotonic() - started) / POLL_SECONDS + 1
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        # Two statements a read for all the batches, not two for each stream.
        assert 0 < statements <= 2 * reads + 2, statements
    finally:
        await database.dispose()
