"""Crash safety: a killed process loses no operation and re-sends no POST."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import grpc
import pytest
from cryptography.fernet import Fernet

from batchd.v1 import batch_pb2, batch_pb2_grpc
from service import store
from service.database import open_database
from service.migrate import upgrade
from service.models import Batch, BatchOperation, new_row
from tests.grpc_client import (
    GET,
    POST,
    bearer,
    operation,
    run_batch,
    wait_completed,
    wait_finished_at_least,
)
from tests.processes import SECRET_KEY, service_env, start_service
from tests.upstream import UpstreamLog

OPERATIONS = 400


async def test_sigkill_mid_batch_then_restart_finishes_everything_once(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    env = service_env(
        database_url, upstream_server[0], BATCH_LEASE_SECONDS="1", BATCH_MAX_OPERATIONS="1000"
    )
    operations = [
        operation(GET if index % 2 else POST, f"/slow/0.05/{index}") for index in range(OPERATIONS)
    ]
    first = await start_service(env, tmp_path / "first.log")
    async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
        stub = batch_pb2_grpc.BatchServiceStub(channel)
        created = await stub.CreateBatch(
            batch_pb2.CreateBatchRequest(batch=batch_pb2.Batch(batch_operations=operations)),
            metadata=bearer(),
        )
        await wait_finished_at_least(stub, created.batch.id, OPERATIONS // 4)
        # Kill while requests are out: a batch's limit counts its claims until their
        # results are stored, so just after a result group is written none may be.
        await _upstream_answering_at_least(upstream_server[1], 4)
    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    sent_before_kill = len(upstream_server[1].requests)
    assert sent_before_kill < OPERATIONS

    second = await start_service(env, tmp_path / "second.log")
    try:
        async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
            batch = await wait_completed(batch_pb2_grpc.BatchServiceStub(channel), created.batch.id)
    finally:
        assert await second.stop() == 0

    assert batch.finished_batch_operations_count == OPERATIONS
    sends = upstream_server[1].by_idempotency_key()
    statuses: Counter[str] = Counter()
    for op in batch.batch_operations:
        statuses[batch_pb2.BatchOperationStatus.Name(op.status)] += 1
        if op.http_method == GET:
            assert op.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED, op
            assert op.response_status == 200
            assert sends[op.id] >= 1
        else:
            assert sends[op.id] <= 1, f"POST {op.id} reached the upstream {sends[op.id]} times"
            if op.status == batch_pb2.BATCH_OPERATION_STATUS_FAILED:
                assert op.failure_reason == "interrupted"
            else:
                assert op.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
                assert sends[op.id] == 1
    assert set(statuses) <= {"BATCH_OPERATION_STATUS_COMPLETED", "BATCH_OPERATION_STATUS_FAILED"}
    # The kill caught POSTs in flight (16 run at once, half of them POSTs).
    assert statuses["BATCH_OPERATION_STATUS_FAILED"] >= 1


async def _upstream_answering_at_least(log: UpstreamLog, count: int) -> None:
    """Until the upstream is answering `count` requests at once (consecutive
    positions alternate GET and POST, so some of them are POSTs)."""
    while log.in_flight < count:
        await asyncio.sleep(0.005)


async def test_sigterm_drains_in_flight_work_and_exits_zero(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    env = service_env(
        database_url,
        upstream_server[0],
        BATCH_MAX_IN_FLIGHT="4",
        BATCH_MAX_IN_FLIGHT_PER_BATCH="4",
        BATCH_SHUTDOWN_GRACE="10",
    )
    operations = [operation(POST, f"/slow/0.5/{index}") for index in range(12)]
    first = await start_service(env, tmp_path / "first.log")
    async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
        stub = batch_pb2_grpc.BatchServiceStub(channel)
        created = await stub.CreateBatch(
            batch_pb2.CreateBatchRequest(batch=batch_pb2.Batch(batch_operations=operations)),
            metadata=bearer(),
        )
        while len(upstream_server[1].requests) < 4:
            await asyncio.sleep(0.01)
    assert await first.stop(signal.SIGTERM) == 0

    second = await start_service(env, tmp_path / "second.log")
    try:
        async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
            batch = await wait_completed(batch_pb2_grpc.BatchServiceStub(channel), created.batch.id)
    finally:
        assert await second.stop() == 0
    # In-flight POSTs finished during the drain instead of being interrupted.
    assert all(
        op.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED for op in batch.batch_operations
    )
    assert set(upstream_server[1].by_idempotency_key().values()) == {1}


async def test_operations_fail_rather_than_run_without_credentials_after_a_key_change(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    env = service_env(database_url, upstream_server[0], BATCH_LEASE_SECONDS="1")
    first = await start_service(env, tmp_path / "first.log")
    async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
        created = await batch_pb2_grpc.BatchServiceStub(channel).CreateBatch(
            batch_pb2.CreateBatchRequest(
                batch=batch_pb2.Batch(
                    batch_operations=[operation(GET, "/slow/5/first"), operation(GET, "/echo/x")],
                    execution_options=batch_pb2.ExecutionOptions(sequential=True),
                )
            ),
            metadata=bearer(),
        )
        while not upstream_server[1].requests:
            await asyncio.sleep(0.01)
    await first.stop(signal.SIGKILL)

    env["BATCH_SECRET_KEY"] = "kY9ZQ3mWq1sV8bXn2cR5tU7wA0dF4gH6jK8lM1nP3rE="
    second = await start_service(env, tmp_path / "second.log")
    try:
        async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
            batch = await wait_completed(batch_pb2_grpc.BatchServiceStub(channel), created.batch.id)
    finally:
        await second.stop()
    assert [op.failure_reason for op in batch.batch_operations] == ["credentials_unavailable"] * 2
    assert [r.path for r in upstream_server[1].requests] == ["/slow/5/first"]


async def test_credentials_that_are_not_text_fail_their_batch_not_the_process(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    """Credentials sealed under the service's key that are not UTF-8 once made
    unsealing raise in the dispatcher: one such row must fail its own operations,
    and every other batch must still run."""
    database = open_database(database_url)
    await upgrade(database)
    sealed = Fernet(SECRET_KEY).encrypt(b"\xff\xfe not UTF-8")
    batch_id, operation_id = str(uuid.uuid4()), str(uuid.uuid4())
    batch = new_row(
        Batch,
        id=batch_id,
        tenant="tenant-a",
        operations_count=1,
        sealed_authorization=sealed,
        in_flight_limit=16,
        created_at=time.time(),
        updated_at=time.time(),
    )
    operation_row = new_row(
        BatchOperation,
        id=operation_id,
        batch_id=batch_id,
        tenant="tenant-a",
        position=0,
        http_method="GET",
        path="/echo/x",
        created_at=time.time(),
        updated_at=time.time(),
    )
    async with database.write() as connection:
        await store.insert_batch(connection, batch, [operation_row])
    await database.dispose()

    env = service_env(database_url, upstream_server[0])
    service = await start_service(env, tmp_path / "log")
    try:
        async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
            stub = batch_pb2_grpc.BatchServiceStub(channel)
            poisoned = await wait_completed(stub, batch_id)
            healthy = await run_batch(stub, [operation(GET, "/echo/healthy")])
    finally:
        await service.stop()
    assert [op.failure_reason for op in poisoned.batch_operations] == ["credentials_unavailable"]
    assert [op.status for op in healthy.batch_operations] == [
        batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
    ]
    assert [request.path for request in upstream_server[1].requests] == ["/echo/healthy"]


@pytest.mark.parametrize(
    "throttle",
    [{}, {"BATCH_TENANT_RATE_LIMIT": "2", "BATCH_TENANT_RATE_BURST": "1"}],
    ids=["unthrottled", "held-by-the-rate-limit"],
)
async def test_a_crash_returns_prefetched_posts_that_were_never_sent_to_pending(
    database_url: str,
    upstream_server: tuple[str, UpstreamLog],
    tmp_path: Path,
    throttle: dict[str, str],
) -> None:
    """Claims are prefetched (twice the running limit), and started ones may wait
    for the rate limit: those never sent must run after a restart; only POSTs
    that reached the upstream may read `interrupted`."""
    env = service_env(
        database_url,
        upstream_server[0],
        BATCH_LEASE_SECONDS="1",
        BATCH_MAX_IN_FLIGHT="3",
        BATCH_MAX_IN_FLIGHT_PER_BATCH="3",
        **throttle,
    )
    operations = [operation(POST, f"/slow/1/{index}") for index in range(18)]
    first = await start_service(env, tmp_path / "first.log")
    async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
        stub = batch_pb2_grpc.BatchServiceStub(channel)
        batch_id = await _created(stub, operations)
        await _sent_at_least(upstream_server[1], 3)
    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    reached = set(upstream_server[1].by_idempotency_key())

    second = await start_service(env, tmp_path / "second.log")
    try:
        async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
            batch = await wait_completed(
                batch_pb2_grpc.BatchServiceStub(channel), batch_id, timeout=60
            )
    finally:
        assert await second.stop() == 0
    sends = upstream_server[1].by_idempotency_key()
    never_sent = [op for op in batch.batch_operations if op.id not in reached]
    assert len(never_sent) == len(operations) - len(reached)
    for op in never_sent:
        assert op.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED, op
        assert sends[op.id] == 1
    for op in batch.batch_operations:
        if op.id in reached:
            # Answered and recorded before the kill, or cut off by it: never twice.
            assert sends[op.id] == 1
            answered = op.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
            assert answered or op.failure_reason == "interrupted", op


async def test_after_sigterm_nothing_new_is_sent_and_the_stop_keeps_to_the_grace(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    """An open watch stream once held the gRPC server's stop while the engine went
    on claiming and sending; the stop then took the grace twice over."""
    grace = 3.0
    env = service_env(
        database_url,
        upstream_server[0],
        BATCH_MAX_IN_FLIGHT="4",
        BATCH_MAX_IN_FLIGHT_PER_BATCH="4",
        BATCH_SHUTDOWN_GRACE=str(grace),
    )
    operations = [operation(POST, f"/slow/2/{index}") for index in range(40)]
    service = await start_service(env, tmp_path / "service.log")
    async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
        stub = batch_pb2_grpc.BatchServiceStub(channel)
        batch_id = await _created(stub, operations)
        watch = stub.WatchBatch(batch_pb2.WatchBatchRequest(id=batch_id), metadata=bearer())
        await watch.read()
        await _sent_at_least(upstream_server[1], 4)
        sent_at_signal = len(upstream_server[1].requests)
        started = time.monotonic()
        assert await service.stop(signal.SIGTERM) == 0
        took = time.monotonic() - started
        watch.cancel()
    assert len(upstream_server[1].requests) == sent_at_signal
    assert took < grace + 2.5, f"the stop took {took:.1f}s"


async def _created(
    stub: batch_pb2_grpc.BatchServiceStub, operations: list[batch_pb2.BatchOperation]
) -> str:
    batch = batch_pb2.Batch(batch_operations=operations)
    created = await stub.CreateBatch(batch_pb2.CreateBatchRequest(batch=batch), metadata=bearer())
    batch_id: str = created.batch.id
    return batch_id


async def _sent_at_least(log: UpstreamLog, count: int) -> None:
    while len(log.requests) < count:
        await asyncio.sleep(0.01)
