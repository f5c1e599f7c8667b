"""BATCH_RETENTION: finished batches older than it are deleted, a chunk at a time."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import grpc

from batchd.v1 import batch_pb2, batch_pb2_grpc
from service import lifecycle
from service.database import open_database
from tests import postgres
from tests.grpc_client import GET, bearer, operation, wait_completed
from tests.processes import free_port, service_env, serving, start_service
from tests.upstream import UpstreamLog

BIG = lifecycle.OPERATIONS_PER_CHUNK + 100


async def create(
    stub: batch_pb2_grpc.BatchServiceStub, paths: list[str], sequential: bool = False
) -> str:
    batch = batch_pb2.Batch(
        batch_operations=[operation(GET, path) for path in paths],
        execution_options=batch_pb2.ExecutionOptions(sequential=sequential),
    )
    created = await stub.CreateBatch(batch_pb2.CreateBatchRequest(batch=batch), metadata=bearer())
    batch_id: str = created.batch.id
    return batch_id


async def exists(stub: batch_pb2_grpc.BatchServiceStub, batch_id: str) -> bool:
    try:
        await stub.GetBatch(batch_pb2.GetBatchRequest(id=batch_id), metadata=bearer())
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND
        return False
    return True


async def operations_of(stub: batch_pb2_grpc.BatchServiceStub, batch_id: str) -> int:
    listed = await stub.ListBatchOperations(
        batch_pb2.ListBatchOperationsRequest(batch_ids=[batch_id]), metadata=bearer()
    )
    total: int = listed.total_size
    return total


async def purged_counts(metrics_port: int) -> tuple[float, float]:
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"http://127.0.0.1:{metrics_port}/metrics")
        exposition = await response.text()

    def value(name: str) -> float:
        match = re.search(rf"^{name}_total ([0-9.e+]+)$", exposition, re.MULTILINE)
        assert match, exposition
        return float(match.group(1))

    return value("batchd_batches_purged"), value("batchd_operations_purged")


async def test_a_chunk_deletes_at_most_its_share_and_spares_young_and_unfinished_batches(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    env = service_env(
        database_url,
        upstream_server[0],
        BATCH_RETENTION="0",
        BATCH_MAX_OPERATIONS=str(BIG),
        BATCH_SHUTDOWN_GRACE="0.1",
    )
    async with serving(env, tmp_path / "service.log") as (_, stub):
        unfinished = await create(stub, ["/slow/30", "/echo/never"], sequential=True)
        old = await wait_completed(stub, await create(stub, [f"/echo/{n}" for n in range(BIG)]))
        young_id = await create(stub, ["/echo/young"])
        young = await wait_completed(stub, young_id)
    cutoff = young.create_time.ToNanoseconds() / 1e9
    assert old.update_time.ToNanoseconds() / 1e9 < cutoff

    database = open_database(database_url)
    try:
        chunks = []
        for _ in range(4):
            async with database.write() as connection:
                chunks.append(await lifecycle.purge_expired_chunk(connection, cutoff))
    finally:
        await database.dispose()
    assert chunks == [
        lifecycle.Purged(0, lifecycle.OPERATIONS_PER_CHUNK),
        lifecycle.Purged(1, 100),
        lifecycle.Purged(),
        lifecycle.Purged(),
    ]

    async with serving(env, tmp_path / "again.log") as (_, stub):
        assert not await exists(stub, old.id)
        assert await operations_of(stub, old.id) == 0
        assert await exists(stub, young_id) and await operations_of(stub, young_id) == 1
        assert await exists(stub, unfinished) and await operations_of(stub, unfinished) == 2


async def test_the_service_purges_expired_batches_on_its_own(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    metrics_port = free_port()
    env = service_env(
        database_url,
        upstream_server[0],
        BATCH_RETENTION="2s",
        BATCH_MAX_OPERATIONS=str(BIG),
        BATCH_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}",
        BATCH_SHUTDOWN_GRACE="0.1",
    )
    async with serving(env, tmp_path / "service.log") as (process, stub):
        unfinished = await create(stub, ["/slow/30", "/echo/never"], sequential=True)
        finished = await wait_completed(
            stub, await create(stub, [f"/echo/{n}" for n in range(BIG)])
        )
        async with asyncio.timeout(20):
            while await exists(stub, finished.id):
                await asyncio.sleep(0.1)
        assert await operations_of(stub, finished.id) == 0
        assert await exists(stub, unfinished) and await operations_of(stub, unfinished) == 2
        assert await purged_counts(metrics_port) == (1, BIG)
    assert "Traceback" not in process.log()


async def test_two_replicas_purge_without_errors_or_double_counts(
    private_postgres: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    url = postgres.url_of(private_postgres)
    ports = [free_port(), free_port()]
    envs = [
        service_env(
            url,
            upstream_server[0],
            BATCH_RETENTION="2s",
            BATCH_MAX_OPERATIONS=str(BIG),
            BATCH_METRICS_ADDRESS=f"127.0.0.1:{port}",
        )
        for port in ports
    ]
    replicas = [
        await start_service(env, tmp_path / f"replica-{n}.log") for n, env in enumerate(envs)
    ]
    try:
        async with grpc.aio.insecure_channel(envs[0]["BATCH_GRPC_ADDRESS"]) as channel:
            stub = batch_pb2_grpc.BatchServiceStub(channel)
            ids = [await create(stub, [f"/echo/{b}/{n}" for n in range(BIG)]) for b in range(4)]
            # Only a finished batch is purged: gone means it ran, then expired.
            async with asyncio.timeout(90):
                for batch_id in ids:
                    while await exists(stub, batch_id):
                        await asyncio.sleep(0.1)
            for batch_id in ids:
                assert await operations_of(stub, batch_id) == 0
        counts = [await purged_counts(port) for port in ports]
    finally:
        for replica in replicas:
            assert await replica.stop() == 0
    assert sum(batches for batches, _ in counts) == len(ids)
    assert sum(operations for _, operations in counts) == len(ids) * BIG
    for replica in replicas:
        assert "Traceback" not in replica.log() and "ERROR" not in replica.log()
