"""Several service replicas on one PostgreSQL database, one of them killed midway."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import grpc

from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests import postgres
from tests.grpc_client import GET, POST, bearer, operation, wait_completed, wait_finished_at_least
from tests.processes import service_env, start_service
from tests.upstream import UpstreamLog

OPERATIONS = 3000


async def test_three_replicas_survive_one_killed_and_run_every_operation_once(
    private_postgres: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    url = postgres.url_of(private_postgres)
    envs = [
        service_env(
            url,
            upstream_server[0],
            BATCH_LEASE_SECONDS="2",
            BATCH_MAX_OPERATIONS=str(OPERATIONS),
            BATCH_MAX_IN_FLIGHT="16",
            BATCH_MAX_IN_FLIGHT_PER_BATCH="16",
        )
        for _ in range(3)
    ]
    replicas = [
        await start_service(env, tmp_path / f"replica-{n}.log") for n, env in enumerate(envs)
    ]
    operations = [
        operation(GET if index % 3 else POST, f"/slow/0.01/{index}") for index in range(OPERATIONS)
    ]
    survivors = replicas[1:]
    try:
        async with grpc.aio.insecure_channel(envs[0]["BATCH_GRPC_ADDRESS"]) as channel:
            stub = batch_pb2_grpc.BatchServiceStub(channel)
            created = await stub.CreateBatch(
                batch_pb2.CreateBatchRequest(batch=batch_pb2.Batch(batch_operations=operations)),
                metadata=bearer(),
            )
            await wait_finished_at_least(stub, created.batch.id, OPERATIONS // 3)
        assert await replicas[0].stop(signal.SIGKILL) == -signal.SIGKILL
        sent_before_kill = len(upstream_server[1].requests)
        async with grpc.aio.insecure_channel(envs[1]["BATCH_GRPC_ADDRESS"]) as channel:
            batch = await wait_completed(
                batch_pb2_grpc.BatchServiceStub(channel), created.batch.id, timeout=120
            )
    finally:
        for replica in survivors:
            assert await replica.stop() == 0

    sends = upstream_server[1].by_idempotency_key()
    executed_by: Counter[str] = Counter()
    for op in batch.batch_operations:
        if op.http_method == GET:
            # Idempotent: answered, and repeated only if the killed replica held it.
            assert op.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
            assert sends[op.id] >= 1
            executed_by["GET repeated" if sends[op.id] > 1 else "GET once"] += 1
        else:
            assert sends[op.id] <= 1, f"POST {op.id} reached the upstream {sends[op.id]} times"
            if op.status == batch_pb2.BATCH_OPERATION_STATUS_FAILED:
                assert op.failure_reason == "interrupted"
                executed_by["POST interrupted"] += 1
            else:
                assert op.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
                assert sends[op.id] == 1
    # At most what the killed replica held (16 running + 16 prefetched) ran twice.
    assert executed_by["GET repeated"] + executed_by["POST interrupted"] <= 32
    # The survivors finished the batch after the kill.
    assert len(upstream_server[1].requests) > sent_before_kill
