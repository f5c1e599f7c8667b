"""Helpers for tests over gRPC: auth metadata, operations, and batches run to completion."""

from __future__ import annotations

import asyncio

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from batchd.json_values import to_struct
from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests.processes import TOKEN

GET = batch_pb2.HTTP_METHOD_GET
POST = batch_pb2.HTTP_METHOD_POST


def bearer(token: str = TOKEN) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def operation(
    method: batch_pb2.HttpMethod, path: str, **fields: object
) -> batch_pb2.BatchOperation:
    message = batch_pb2.BatchOperation(http_method=method, path=path)
    for name in ("query_params", "body"):
        if name in fields:
            getattr(message, name).CopyFrom(to_struct(fields[name]))  # type: ignore[arg-type]
    return message


async def run_batch(
    stub: batch_pb2_grpc.BatchServiceStub,
    operations: list[batch_pb2.BatchOperation],
    timeout: float = 30,
    options: batch_pb2.ExecutionOptions | None = None,
) -> batch_pb2.Batch:
    """Creates a batch and waits until it completes; returns it with its operations."""
    batch = batch_pb2.Batch(batch_operations=operations, execution_options=options)
    created = await stub.CreateBatch(batch_pb2.CreateBatchRequest(batch=batch), metadata=bearer())
    return await wait_completed(stub, created.batch.id, timeout)


async def wait_completed(
    stub: batch_pb2_grpc.BatchServiceStub,
    batch_id: str,
    timeout: float = 30,
    statuses: tuple[int, ...] = (batch_pb2.BATCH_STATUS_COMPLETED,),
    token: str = TOKEN,
) -> batch_pb2.Batch:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        reply = await stub.GetBatch(
            batch_pb2.GetBatchRequest(id=batch_id, view=batch_pb2.BATCH_VIEW_FULL),
            metadata=bearer(token),
        )
        batch: batch_pb2.Batch = reply.batch
        if batch.status in statuses:
            return batch
        await asyncio.sleep(0.02)
    raise TimeoutError(f"batch {batch_id} did not complete")


async def wait_finished_at_least(
    stub: batch_pb2_grpc.BatchServiceStub, batch_id: str, count: int
) -> None:
    while True:
        reply = await stub.GetBatch(batch_pb2.GetBatchRequest(id=batch_id), metadata=bearer())
        if reply.batch.finished_batch_operations_count >= count:
            return
        await asyncio.sleep(0.01)


def details(error: grpc.aio.AioRpcError) -> tuple[str, list[tuple[str, str]]]:
    """The ErrorInfo reason and the (field, reason) of each BadRequest violation."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no rich status in the trailers"
    reason, violations = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "batchd"
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for violation in bad.field_violations:
                assert violation.description
                violations.append((violation.field, violation.reason))
    return reason, violations
