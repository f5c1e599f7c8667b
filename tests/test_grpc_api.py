"""BatchService over gRPC directly: status codes, rich error details, auth and tenants."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests.grpc_client import bearer, details
from tests.shared_stack import fresh_token

GET = batch_pb2.HTTP_METHOD_GET


def new_batch(*paths: str) -> batch_pb2.CreateBatchRequest:
    operations = [batch_pb2.BatchOperation(http_method=GET, path=path) for path in paths]
    return batch_pb2.CreateBatchRequest(batch=batch_pb2.Batch(batch_operations=operations))


async def failure(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def batch_violations(
    stub: batch_pb2_grpc.BatchServiceStub, request: batch_pb2.CreateBatchRequest
) -> list[tuple[str, str]]:
    """The (field, reason) violations of a CreateBatch refused as an invalid batch."""
    error = await failure(stub.CreateBatch(request, metadata=bearer()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, violations = details(error)
    assert reason == "batch.invalid"
    return violations


async def test_unknown_ids_are_not_found(shared_stub: batch_pb2_grpc.BatchServiceStub) -> None:
    for call, reason in (
        (
            shared_stub.GetBatch(
                batch_pb2.GetBatchRequest(id=str(uuid.uuid4())), metadata=bearer()
            ),
            "batch",
        ),
        (
            shared_stub.GetBatch(batch_pb2.GetBatchRequest(id="not-a-uuid"), metadata=bearer()),
            "batch",
        ),
        (
            shared_stub.GetBatchOperation(
                batch_pb2.GetBatchOperationRequest(id=str(uuid.uuid4())), metadata=bearer()
            ),
            "batch_operation",
        ),
    ):
        error = await failure(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert details(error) == (f"{reason}.not_found", [])


async def test_invalid_batches_name_every_violation(
    shared_stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    request = new_batch("/ok", "//evil.example/x", "/a/../b")
    request.batch.batch_operations[0].http_method = batch_pb2.HTTP_METHOD_UNSPECIFIED
    assert await batch_violations(shared_stub, request) == [
        ("batch_operations[0].http_method", "batch_operation.http_method.invalid"),
        ("batch_operations[1].path", "batch_operation.path.invalid"),
        ("batch_operations[2].path", "batch_operation.path.invalid"),
    ]
    assert await batch_violations(shared_stub, new_batch()) == [
        ("batch_operations", "batch.batch_operations.blank")
    ]


async def test_invalid_list_requests_name_their_fields(
    shared_stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    request = batch_pb2.ListBatchesRequest(page_size=101, page=-1, order_by="name sideways")
    error = await failure(shared_stub.ListBatches(request, metadata=bearer()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in details(error)[1]] == ["page_size", "page", "order_by"]
    operations = batch_pb2.ListBatchOperationsRequest(batch_ids=["nope"])
    error = await failure(shared_stub.ListBatchOperations(operations, metadata=bearer()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(error)[1] == [("batch_ids[0]", "batch_ids.invalid")]


Call = Callable[[batch_pb2_grpc.BatchServiceStub, Any], Awaitable[Any]]
EVERY_RPC: list[Call] = [
    lambda stub, md: stub.CreateBatch(new_batch("/x"), metadata=md),
    lambda stub, md: stub.GetBatch(batch_pb2.GetBatchRequest(id=str(uuid.uuid4())), metadata=md),
    lambda stub, md: stub.ListBatches(batch_pb2.ListBatchesRequest(), metadata=md),
    lambda stub, md: stub.GetBatchOperation(
        batch_pb2.GetBatchOperationRequest(id=str(uuid.uuid4())), metadata=md
    ),
    lambda stub, md: stub.ListBatchOperations(batch_pb2.ListBatchOperationsRequest(), metadata=md),
]


async def test_every_rpc_needs_a_known_bearer_token(
    shared_stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    for metadata in (
        (),
        bearer("wrong-token"),
        (("authorization", "Basic dG9rZW4tYTo="),),
        (("authorization", "token-a"),),
    ):
        for rpc in EVERY_RPC:
            error = await failure(rpc(shared_stub, metadata))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            assert details(error) == ("unauthorized", [])


async def test_tenants_are_isolated(shared_stub: batch_pb2_grpc.BatchServiceStub) -> None:
    request = new_batch("/echo/a", "/echo/b")
    request.view = batch_pb2.BATCH_VIEW_FULL
    mine = bearer(fresh_token())
    created = (await shared_stub.CreateBatch(request, metadata=mine)).batch
    assert [op.path for op in created.batch_operations] == ["/echo/a", "/echo/b"]
    other = bearer(fresh_token())
    for call in (
        shared_stub.GetBatch(batch_pb2.GetBatchRequest(id=created.id), metadata=other),
        shared_stub.GetBatchOperation(
            batch_pb2.GetBatchOperationRequest(id=created.batch_operations[0].id), metadata=other
        ),
    ):
        error = await failure(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
    listed = await shared_stub.ListBatches(
        batch_pb2.ListBatchesRequest(ids=[created.id]), metadata=other
    )
    assert (listed.total_size, list(listed.batches)) == (0, [])
    operations = await shared_stub.ListBatchOperations(
        batch_pb2.ListBatchOperationsRequest(batch_ids=[created.id]), metadata=other
    )
    assert (operations.total_size, list(operations.batch_operations)) == (0, [])
    listed = await shared_stub.ListBatches(batch_pb2.ListBatchesRequest(), metadata=mine)
    assert [batch.id for batch in listed.batches] == [created.id]
    assert listed.total_size == 1


@pytest.mark.parametrize(
    ("body", "query_params"),
    [
        # NUL characters: no database can store them (refused as invalid, not unavailable).
        ({"text": "a\x00b"}, {"key\x00": "v"}),
        # A Struct may carry NaN or an infinity; no JSON column or upstream could.
        ({"n": float("nan")}, {"n": float("inf")}),
    ],
    ids=["nul", "nan-and-infinity"],
)
async def test_json_no_database_can_store_is_invalid_not_unavailable(
    shared_stub: batch_pb2_grpc.BatchServiceStub,
    body: dict[str, str | float],
    query_params: dict[str, str | float],
) -> None:
    request = new_batch("/a", "/b")
    request.batch.batch_operations[0].body.update(body)
    request.batch.batch_operations[1].query_params.update(query_params)
    assert await batch_violations(shared_stub, request) == [
        ("batch_operations[0].body", "batch_operation.body.invalid"),
        ("batch_operations[1].query_params", "batch_operation.query_params.invalid"),
    ]


async def test_an_operation_too_large_to_read_back_with_its_response_is_invalid(
    shared_stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    """With the default 1 MiB response limit, an operation may take about 10.4 MiB."""
    request = new_batch("/a", "/b")
    request.batch.batch_operations[1].body.update({"data": "x" * 11_000_000})
    assert await batch_violations(shared_stub, request) == [
        ("batch_operations[1]", "batch_operation.too_large"),
    ]


async def test_an_operation_that_grows_when_read_back_is_measured_as_read(
    shared_stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    """Values of no kind (2 bytes each in a list) come back as nulls (4 bytes): 6 MB as
    sent, 12 MB as read, over the default limit of about 10.4 MiB."""
    request = new_batch("/a")
    kindless = struct_pb2.ListValue.FromString(b"\n\x00" * 3_000_000)
    request.batch.batch_operations[0].body.fields["values"].list_value.CopyFrom(kindless)
    assert await batch_violations(shared_stub, request) == [
        ("batch_operations[0]", "batch_operation.too_large"),
    ]


@pytest.mark.parametrize(
    ("request_id", "code"),
    [("k" * 201, "batch.request_id.too_long"), ("order\x00-1", "batch.request_id.invalid")],
    ids=["too-long", "control-character"],
)
async def test_request_ids_the_gateway_would_refuse_are_invalid(
    shared_stub: batch_pb2_grpc.BatchServiceStub, request_id: str, code: str
) -> None:
    request = new_batch("/a")
    request.request_id = request_id
    assert await batch_violations(shared_stub, request) == [("request_id", code)]
