"""A batch's operations listed in submitted order, and every order paged stably."""

from __future__ import annotations

from typing import Any

import aiohttp
import grpc
import pytest

from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests.grpc_client import bearer
from tests.rest import assert_error, call, create_batch, wait_completed

COUNT = 250


async def pages(api: aiohttp.ClientSession, query: str) -> list[dict[str, Any]]:
    """Every operation a paged list yields, 100 at a time, in the order given."""
    listed: list[dict[str, Any]] = []
    for page in (1, 2, 3):
        body = await call(api, "GET", f"/v1/batch_operations?{query}&limit=100&page={page}", 200)
        assert body["pagination"]["count"] == COUNT
        listed.extend(body["data"])
    return listed


@pytest.fixture
async def numbered_batch(api: aiohttp.ClientSession) -> tuple[str, dict[str, int]]:
    """A finished batch of 250 operations; each operation's position by id."""
    operations = [
        {"http_method": "GET", "path": "/echo/n", "query_params": {"n": n}} for n in range(COUNT)
    ]
    created = await create_batch(api, operations)
    batch = await wait_completed(api, created["id"], expand=False)
    listed = await pages(api, f"batch_ids[]={batch['id']}&sort=position:asc")
    positions = {op["id"]: int(op["query_params"]["n"]) for op in listed}
    return batch["id"], positions


async def test_position_order_lists_a_batch_as_submitted_in_pages(
    api: aiohttp.ClientSession, numbered_batch: tuple[str, dict[str, int]]
) -> None:
    batch_id, _ = numbered_batch
    ascending = await pages(api, f"batch_ids[]={batch_id}&sort=position:asc")
    assert [int(op["query_params"]["n"]) for op in ascending] == list(range(COUNT))
    descending = await pages(api, f"batch_ids[]={batch_id}&sort=position:desc")
    assert [int(op["query_params"]["n"]) for op in descending] == list(reversed(range(COUNT)))


@pytest.mark.parametrize(
    "sort", ["", "&sort=created_at:asc", "&sort=created_at:desc", "&sort=updated_at:asc"]
)
async def test_every_order_pages_each_operation_exactly_once(
    api: aiohttp.ClientSession, numbered_batch: tuple[str, dict[str, int]], sort: str
) -> None:
    batch_id, positions = numbered_batch
    listed = await pages(api, f"batch_ids[]={batch_id}{sort}")
    assert sorted(op["id"] for op in listed) == sorted(positions)


async def test_ids_of_a_batch_sort_in_submitted_order(
    api: aiohttp.ClientSession, numbered_batch: tuple[str, dict[str, int]]
) -> None:
    _, positions = numbered_batch
    assert [positions[op_id] for op_id in sorted(positions)] == list(range(COUNT))


async def test_position_order_spans_batches_batch_by_batch(api: aiohttp.ClientSession) -> None:
    first = await create_batch(api, [{"http_method": "GET", "path": "/echo/a"}] * 3)
    second = await create_batch(api, [{"http_method": "GET", "path": "/echo/b"}] * 2)
    body = await call(api, "GET", "/v1/batch_operations?sort=position:asc", 200)
    # Batches in id order (their creation order), each in submitted order.
    assert [op["batch"] for op in body["data"]] == [first["id"]] * 3 + [second["id"]] * 2


@pytest.mark.parametrize("sort", ["bogus:asc", "created_at:sideways", "create_time:asc"])
async def test_a_bad_sort_is_refused_in_rest_names(api: aiohttp.ClientSession, sort: str) -> None:
    body = await call(api, "GET", f"/v1/batch_operations?sort={sort}", 422)
    assert_error(body, "unprocessable_entity")
    assert [error["attribute"] for error in body["validation_errors"]] == ["sort"]
    for text in (body["message"], body["validation_errors"][0]["message"]):
        assert "created_at" in text and "position" in text
        for grpc_name in ("order_by", "create_time", "update_time"):
            assert grpc_name not in text


async def test_batches_cannot_be_sorted_by_position(api: aiohttp.ClientSession) -> None:
    body = await call(api, "GET", "/v1/batches?sort=position:asc", 422)
    assert [error["attribute"] for error in body["validation_errors"]] == ["sort"]
    assert "created_at" in body["message"] and "create_time" not in body["message"]


async def test_grpc_order_by_position(shared_stub: batch_pb2_grpc.BatchServiceStub) -> None:
    operations = [batch_pb2.BatchOperation(http_method=batch_pb2.HTTP_METHOD_GET, path="/echo/x")]
    batch = batch_pb2.Batch(batch_operations=operations * 5)
    created = await shared_stub.CreateBatch(
        batch_pb2.CreateBatchRequest(batch=batch, view=batch_pb2.BATCH_VIEW_FULL),
        metadata=bearer(),
    )
    submitted = [op.id for op in created.batch.batch_operations]
    for order_by, expected in (("position asc", submitted), ("position desc", submitted[::-1])):
        reply = await shared_stub.ListBatchOperations(
            batch_pb2.ListBatchOperationsRequest(batch_ids=[created.batch.id], order_by=order_by),
            metadata=bearer(),
        )
        assert [op.id for op in reply.batch_operations] == expected
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shared_stub.ListBatches(
            batch_pb2.ListBatchesRequest(order_by="position asc"), metadata=bearer()
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
