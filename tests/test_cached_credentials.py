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
from tests.grpc_client import GET, bearer, operation
from tests.processes import TOKEN
from tests.servicers import migrated_sqlite, servicer_of
from tests.upstream import UpstreamLog


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
