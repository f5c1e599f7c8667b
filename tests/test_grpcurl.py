"""The real grpcurl binary against the service, with no proto files: reflection only."""

from __future__ import annotations

import json

from tests.grpcurl import grpcurl
from tests.shared_stack import SharedStack, fresh_token


async def test_list_shows_the_services(shared_stack: SharedStack) -> None:
    code, out, err = await grpcurl(shared_stack.grpc_target, "list")
    assert code == 0, err
    assert set(out.split()) >= {
        "batchd.v1.BatchService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_describe_shows_every_rpc(shared_stack: SharedStack) -> None:
    code, out, err = await grpcurl(shared_stack.grpc_target, "describe", "batchd.v1.BatchService")
    assert code == 0, err
    assert "batchd.v1.BatchService is a service" in out
    for rpc in (
        "CreateBatch",
        "GetBatch",
        "ListBatches",
        "GetBatchOperation",
        "ListBatchOperations",
    ):
        assert f"rpc {rpc} (" in out


async def test_create_batch_with_a_token(shared_stack: SharedStack) -> None:
    request = {
        "batch": {
            "batch_operations": [
                {"http_method": "HTTP_METHOD_GET", "path": "/echo/a", "query_params": {"q": 1}},
                {"http_method": "HTTP_METHOD_POST", "path": "/echo/b", "body": {"x": "y"}},
            ]
        },
        "view": "BATCH_VIEW_FULL",
    }
    code, out, err = await grpcurl(
        "-H",
        f"authorization: Bearer {fresh_token()}",
        "-d",
        json.dumps(request),
        shared_stack.grpc_target,
        "batchd.v1.BatchService/CreateBatch",
    )
    assert code == 0, err
    # grpcurl prints the proto field names.
    batch = json.loads(out)["batch"]
    assert batch["batch_operations_count"] == 2
    assert batch["status"] == "BATCH_STATUS_PENDING"
    operations = batch["batch_operations"]
    assert [op["path"] for op in operations] == ["/echo/a", "/echo/b"]
    assert [op["http_method"] for op in operations] == ["HTTP_METHOD_GET", "HTTP_METHOD_POST"]
    assert operations[0]["query_params"] == {"q": 1}
    assert operations[1]["body"] == {"x": "y"}
    assert {op["batch_id"] for op in operations} == {batch["id"]}


async def test_create_batch_without_a_token_is_unauthenticated(
    shared_stack: SharedStack,
) -> None:
    code, _, err = await grpcurl(
        "-d",
        '{"batch": {"batch_operations": [{"http_method": "HTTP_METHOD_GET", "path": "/x"}]}}',
        shared_stack.grpc_target,
        "batchd.v1.BatchService/CreateBatch",
    )
    assert code != 0
    assert "Unauthenticated" in err


async def test_health_check(shared_stack: SharedStack) -> None:
    for service in ("", "batchd.v1.BatchService"):
        code, out, err = await grpcurl(
            "-d",
            json.dumps({"service": service}),
            shared_stack.grpc_target,
            "grpc.health.v1.Health/Check",
        )
        assert code == 0, err
        assert json.loads(out) == {"status": "SERVING"}
