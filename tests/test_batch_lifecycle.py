"""Beyond the contract, over gRPC: cancel, watch, idempotent create, execution options."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests.grpc_client import GET, POST, bearer, operation, wait_completed
from tests.processes import OTHER_TOKEN
from tests.upstream import UpstreamLog

CANCELED = batch_pb2.BATCH_OPERATION_STATUS_CANCELED
COMPLETED = batch_pb2.BATCH_OPERATION_STATUS_COMPLETED


async def create(
    stub: batch_pb2_grpc.BatchServiceStub,
    operations: list[batch_pb2.BatchOperation],
    token: str | None = None,
    request_id: str = "",
    **options: object,
) -> batch_pb2.Batch:
    batch = batch_pb2.Batch(
        batch_operations=operations,
        execution_options=batch_pb2.ExecutionOptions(**options),  # type: ignore[arg-type]
    )
    reply = await stub.CreateBatch(
        batch_pb2.CreateBatchRequest(batch=batch, request_id=request_id),
        metadata=bearer(token) if token else bearer(),
    )
    created: batch_pb2.Batch = reply.batch
    return created


async def test_cancel_stops_pending_operations_and_ends_the_batch_canceled(
    stub: batch_pb2_grpc.BatchServiceStub, upstream_server: tuple[str, UpstreamLog]
) -> None:
    created = await create(
        stub, [operation(GET, f"/slow/0.2/{i}") for i in range(40)], max_concurrency=2
    )
    while not upstream_server[1].requests:
        await asyncio.sleep(0.01)
    reply = await stub.CancelBatch(batch_pb2.CancelBatchRequest(id=created.id), metadata=bearer())
    assert reply.batch.status in (
        batch_pb2.BATCH_STATUS_IN_PROGRESS,
        batch_pb2.BATCH_STATUS_CANCELED,
    )
    batch = await wait_completed(stub, created.id, statuses=(batch_pb2.BATCH_STATUS_CANCELED,))
    sent = upstream_server[1].by_idempotency_key()
    statuses = [op.status for op in batch.batch_operations]
    assert set(statuses) <= {COMPLETED, CANCELED} and statuses.count(CANCELED) >= 30
    assert batch.finished_batch_operations_count == 40
    for op in batch.batch_operations:
        assert (op.id in sent) == (op.status == COMPLETED)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.CancelBatch(batch_pb2.CancelBatchRequest(id=created.id), metadata=bearer())
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_watch_streams_the_state_then_each_finished_operation(
    stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    created = await create(stub, [operation(GET, f"/slow/0.05/{i}") for i in range(6)])
    events = []
    async for event in stub.WatchBatch(
        batch_pb2.WatchBatchRequest(id=created.id), metadata=bearer()
    ):
        events.append(event)
        await asyncio.sleep(0.05)  # a slow consumer
    assert events[0].batch.id == created.id and not events[0].HasField("batch_operation")
    finished = {event.batch_operation.id for event in events if event.HasField("batch_operation")}
    batch = await wait_completed(stub, created.id)
    assert finished == {op.id for op in batch.batch_operations}
    assert events[-1].batch.status == batch_pb2.BATCH_STATUS_COMPLETED
    assert events[-1].batch.finished_batch_operations_count == 6


async def watch_all(
    stub: batch_pb2_grpc.BatchServiceStub, batch_id: str, resume_after: str = ""
) -> list[batch_pb2.WatchBatchResponse]:
    request = batch_pb2.WatchBatchRequest(id=batch_id, resume_after=resume_after)
    return [event async for event in stub.WatchBatch(request, metadata=bearer())]


async def test_a_resumed_watch_sends_what_finished_after_the_last_event_seen(
    stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    first = await create(stub, [operation(GET, f"/slow/0.02/{i}") for i in range(8)])
    seen = [e.batch_operation.id for e in await watch_all(stub, first.id) if e.batch_operation.id]
    assert len(seen) == 8
    for cut in (0, 3, 7):
        events = await watch_all(stub, first.id, resume_after=seen[cut])
        assert not events[0].HasField("batch_operation")  # the batch as it is now
        assert [e.batch_operation.id for e in events[1:]] == seen[cut + 1 :]
    # Named by the batch's own id: from before its first operation.
    events = await watch_all(stub, first.id, resume_after=first.id)
    assert [e.batch_operation.id for e in events[1:]] == seen
    other = await create(stub, [operation(GET, "/echo/other")])
    for wrong in (other.id, seen[0].upper(), "not-an-id"):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await watch_all(stub, first.id, wrong)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_watch_of_an_unknown_batch_is_not_found_and_disconnects_are_harmless(
    stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        async for _ in stub.WatchBatch(
            batch_pb2.WatchBatchRequest(id="4c1ec4d4-4b0f-4f4e-9a8e-000000000000"),
            metadata=bearer(),
        ):
            pass
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    created = await create(stub, [operation(GET, "/slow/2/x")])
    for _ in range(20):
        call = stub.WatchBatch(batch_pb2.WatchBatchRequest(id=created.id), metadata=bearer())
        await call.read()
        call.cancel()
    reply = await stub.GetBatch(batch_pb2.GetBatchRequest(id=created.id), metadata=bearer())
    assert reply.batch.id == created.id


async def test_a_repeated_request_id_returns_the_first_batch(
    stub: batch_pb2_grpc.BatchServiceStub, upstream_server: tuple[str, UpstreamLog]
) -> None:
    operations = [operation(POST, "/echo/orders", body={"n": 1})]
    first = await create(stub, operations, request_id="order-1")
    again = await create(stub, operations, request_id="order-1")
    assert again.id == first.id
    other_tenant = await create(stub, operations, token=OTHER_TOKEN, request_id="order-1")
    assert other_tenant.id != first.id
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await create(stub, [operation(POST, "/echo/orders", body={"n": 2})], request_id="order-1")
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await wait_completed(stub, first.id)
    while len(upstream_server[1].requests) < 2:
        await asyncio.sleep(0.01)
    # One execution per tenant's batch; the repeat executed nothing.
    assert [r.body for r in upstream_server[1].requests] == [{"n": 1}, {"n": 1}]


async def test_sequential_runs_in_order_one_at_a_time_and_stops_on_failure(
    stub: batch_pb2_grpc.BatchServiceStub, upstream_server: tuple[str, UpstreamLog]
) -> None:
    paths = ["/slow/0.02/a", "/slow/0.02/b", "/status/500", "/slow/0.02/c", "/slow/0.02/d"]
    created = await create(
        stub,
        [operation(GET, path) for path in paths],
        sequential=True,
        stop_on_failure=True,
    )
    batch = await wait_completed(stub, created.id)
    assert [r.path for r in upstream_server[1].requests] == paths[:3]
    assert upstream_server[1].max_in_flight == 1
    assert [op.status for op in batch.batch_operations] == [COMPLETED] * 3 + [CANCELED] * 2
    assert batch.status == batch_pb2.BATCH_STATUS_COMPLETED


async def test_max_concurrency_caps_a_batch(
    stub: batch_pb2_grpc.BatchServiceStub, upstream_server: tuple[str, UpstreamLog]
) -> None:
    created = await create(
        stub, [operation(GET, f"/slow/0.05/{i}") for i in range(12)], max_concurrency=2
    )
    await wait_completed(stub, created.id)
    assert upstream_server[1].max_in_flight == 2
