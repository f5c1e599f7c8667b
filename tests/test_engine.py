"""The execution engine against a real upstream, over real gRPC."""

from __future__ import annotations

import asyncio

from batchd.json_values import from_value, to_struct
from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests.conftest import bearer
from tests.upstream import UpstreamLog

GET = batch_pb2.HTTP_METHOD_GET
POST = batch_pb2.HTTP_METHOD_POST


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
) -> batch_pb2.Batch:
    """Creates a batch and waits until it completes; returns it with its operations."""
    created = await stub.CreateBatch(
        batch_pb2.CreateBatchRequest(batch=batch_pb2.Batch(batch_operations=operations)),
        metadata=bearer(),
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        reply = await stub.GetBatch(
            batch_pb2.GetBatchRequest(id=created.batch.id, view=batch_pb2.BATCH_VIEW_FULL),
            metadata=bearer(),
        )
        batch: batch_pb2.Batch = reply.batch
        if batch.status == batch_pb2.BATCH_STATUS_COMPLETED:
            return batch
        await asyncio.sleep(0.02)
    raise TimeoutError(f"batch {created.batch.id} did not complete")


async def test_executes_operations_and_records_responses(
    stub: batch_pb2_grpc.BatchServiceStub, upstream_server: tuple[str, UpstreamLog]
) -> None:
    batch = await run_batch(
        stub,
        [
            operation(GET, "/echo/products", query_params={"ids": ["a", "b"], "f": {"x": True}}),
            operation(POST, "/echo/products", body={"product": {"name": "Test", "qty": 2}}),
            operation(GET, "/status/404"),
        ],
    )
    assert batch.finished_batch_operations_count == 3
    get, post, missing = batch.batch_operations
    assert get.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
    assert get.response_status == 200
    echoed = from_value(get.response_body)
    # Object keys come in no set order (a Struct is a map, JSONB sorts them); list items do.
    pairs = echoed.pop("query").split("&")
    assert sorted(pairs) == ["f[x]=true", "ids[]=a", "ids[]=b"]
    assert pairs.index("ids[]=a") < pairs.index("ids[]=b")
    assert echoed == {"method": "GET", "path": "/echo/products", "body": None}
    assert from_value(post.response_body)["body"] == {"product": {"name": "Test", "qty": 2}}
    assert missing.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
    assert missing.response_status == 404
    seen = upstream_server[1].requests
    assert {r.headers["Idempotency-Key"] for r in seen} == {op.id for op in batch.batch_operations}
    assert all(r.headers["Authorization"] == "Bearer token-a" for r in seen)
