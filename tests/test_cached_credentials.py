"""What an engine keeps of a caller's Authorization, and until when."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchd.v1 import batch_pb2, batch_pb2_grpc
from service.database import open_database
from service.engine.engine import Engine
from service.engine.urls import Upstream
from service.server import Services
from service.settings import ServiceSettings
from service.signals import Signals
from tests.grpc_client import GET, bearer, operation
from tests.processes import TOKEN
from tests.servicers import migrated_sqlite, servicer_of
from tests.upstream import UpstreamLog

COMPLETED = batch_pb2.BATCH_STATUS_COMPLETED


@dataclass
class Served:
    stub: batch_pb2_grpc.BatchServiceStub
    engine: Engine


@pytest.fixture
async def served(tmp_path: Path, upstream_server: tuple[str, UpstreamLog]) -> AsyncIterator[Served]:
    """The servicer and an engine in this process, sharing one database, its sealer and
    its signals."""
    url = await migrated_sqlite(tmp_path)
    database = open_database(url)
    servicer = servicer_of(database, url)
    settings = ServiceSettings(database_url=url, api_tokens=f"{TOKEN}:tenant-a")
    upstream = Upstream.parse(upstream_server[0])
    engine = Engine(database, settings, servicer.sealer, upstream, servicer.signals)
    await engine.start(on_death=lambda: None)
    try:
        channel = Services.of(servicer).in_process_channel()
        yield Served(batch_pb2_grpc.BatchServiceStub(channel), engine)
    finally:
        await engine.stop(grace=1)
        await database.dispose()


async def test_a_canceled_batch_s_credentials_are_dropped_at_once(
    served: Served, upstream_server: tuple[str, UpstreamLog]
) -> None:
    batch = batch_pb2.Batch(
        batch_operations=[operation(GET, f"/slow/0.3/{i}") for i in range(6)],
        execution_options=batch_pb2.ExecutionOptions(sequential=True),
    )
    reply = await served.stub.CreateBatch(
        batch_pb2.CreateBatchRequest(batch=batch), metadata=bearer()
    )
    batch_id = reply.batch.id
    while not upstream_server[1].requests:
        await asyncio.sleep(0.01)
    assert served.engine.dispatcher.holds_credentials(batch_id)

    await served.stub.CancelBatch(batch_pb2.CancelBatchRequest(id=batch_id), metadata=bearer())

    # While the operation sent before the cancel still runs, with its own copy.
    assert served.engine.dispatcher.running == 1
    assert not served.engine.dispatcher.holds_credentials(batch_id)


async def test_credentials_of_a_batch_another_engine_finished_are_dropped(
    tmp_path: Path, upstream_server: tuple[str, UpstreamLog]
) -> None:
    """Two engines, as two replicas would be, share a batch: only the one that stores
    its last result hears that it finished; the other drops its copy of the caller's
    credentials when it next looks for work and finds the batch gone."""
    url = await migrated_sqlite(tmp_path)
    database = open_database(url)
    servicer = servicer_of(database, url)
    # Two operations at a time each, the batch four: both engines get some of it.
    settings = ServiceSettings(
        database_url=url,
        api_tokens=f"{TOKEN}:tenant-a",
        max_in_flight=2,
        max_in_flight_per_batch=4,
    )
    upstream = Upstream.parse(upstream_server[0])
    engines = [
        Engine(database, settings, servicer.sealer, upstream, signals)
        for signals in (servicer.signals, Signals(url))
    ]
    for engine in engines:
        await engine.start(on_death=lambda: None)
    try:
        stub = batch_pb2_grpc.BatchServiceStub(Services.of(servicer).in_process_channel())
        batch = batch_pb2.Batch(
            # Alone, the first engine would take 1.5 s: the second, which only polls
            # (every POLL_SECONDS), is sure to find some of it pending.
            batch_operations=[operation(GET, f"/slow/0.3/{i}") for i in range(10)]
        )
        reply = await stub.CreateBatch(batch_pb2.CreateBatchRequest(batch=batch), metadata=bearer())
        batch_id, held_by = reply.batch.id, set[int]()
        request = batch_pb2.GetBatchRequest(id=batch_id)
        async with asyncio.timeout(30):
            while (await stub.GetBatch(request, metadata=bearer())).batch.status != COMPLETED:
                held_by.update(
                    n for n, e in enumerate(engines) if e.dispatcher.holds_credentials(batch_id)
                )
                await asyncio.sleep(0.01)
        assert held_by == {0, 1}
        for _ in range(500):  # 10 s: each engine looks for work every POLL_SECONDS at least
            if not any(engine.dispatcher.holds_credentials(batch_id) for engine in engines):
                break
            await asyncio.sleep(0.02)
        assert [engine.dispatcher.holds_credentials(batch_id) for engine in engines] == [False] * 2
    finally:
        for engine in engines:
            await engine.stop(grace=1)
        await database.dispose()
