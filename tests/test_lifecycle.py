"""Retry and delete (issue 16), through the gateway and over gRPC, against a real upstream."""

from __future__ import annotations

from typing import Any

import aiohttp
import grpc
import pytest

from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests.grpc_client import bearer
from tests.rest import (
    OTHER_AUTH,
    assert_batch,
    assert_error,
    call,
    create_batch,
    wait_completed,
)
from tests.upstream import UpstreamLog

OK = {"http_method": "GET", "path": "/echo/ok"}
ANSWERED_500 = {"http_method": "POST", "path": "/status/500", "body": {"n": 1}}
# The upstream closes the connection mid-response: a POST is never re-sent, so it fails
# without a response although the request did reach the upstream.
CUT_OFF = {"http_method": "POST", "path": "/cutoff", "body": {"n": 2}}
SLOW = {"http_method": "GET", "path": "/slow/3"}


async def finished_batch(http: aiohttp.ClientSession, operations: list[dict[str, Any]]) -> Any:
    created = await create_batch(http, operations)
    return await wait_completed(http, created["id"])


async def retry(
    http: aiohttp.ClientSession, batch_id: str, status: int = 200, **kwargs: Any
) -> Any:
    return await call(http, "POST", f"/v1/batches/{batch_id}/retry", status, **kwargs)


def keys_sent_to(log: UpstreamLog, path: str) -> list[str]:
    return [r.headers["Idempotency-Key"] for r in log.requests if r.path == path]


async def test_retry_resends_what_got_no_response_under_its_original_id(
    http: aiohttp.ClientSession, upstream_server: tuple[str, UpstreamLog]
) -> None:
    _, log = upstream_server
    source = await finished_batch(http, [OK, ANSWERED_500, CUT_OFF])
    ok, answered, cut_off = source["batch_operations"]["data"]
    assert [op["status"] for op in (ok, answered, cut_off)] == ["completed", "completed", "failed"]
    assert keys_sent_to(log, "/cutoff") == [cut_off["id"]]

    # Default: failed, timed_out and canceled only.
    retried = await retry(http, source["id"])
    assert retried["retry_of"] == source["id"]
    assert_batch({k: v for k, v in retried.items() if k != "retry_of"})
    assert retried["id"] != source["id"]
    assert retried["batch_operations_count"] == 1
    done = await wait_completed(http, retried["id"])
    [copy] = done["batch_operations"]["data"]
    assert (copy["http_method"], copy["path"], copy["body"]) == ("POST", "/cutoff", {"n": 2})
    assert copy["id"] != cut_off["id"]
    # Re-sent under the original's key, so an upstream keeping keys drops a repeat.
    assert keys_sent_to(log, "/cutoff") == [cut_off["id"], cut_off["id"]]

    # A retry of the retry still sends the very first key.
    again = await retry(http, retried["id"])
    await wait_completed(http, again["id"])
    assert keys_sent_to(log, "/cutoff") == [cut_off["id"]] * 3

    # A 5xx got a response: its copy goes under its own new id.
    by_class = await retry(http, source["id"], json={"response_statuses": ["5xx"]})
    done = await wait_completed(http, by_class["id"])
    [copy] = done["batch_operations"]["data"]
    assert copy["path"] == "/status/500" and copy["body"] == {"n": 1}
    assert keys_sent_to(log, "/status/500") == [answered["id"], copy["id"]]


async def test_retry_selects_by_status_and_response_status_in_source_order(
    api: aiohttp.ClientSession,
) -> None:
    not_found = {"http_method": "GET", "path": "/status/404"}
    teapot = {"http_method": "GET", "path": "/status/418"}
    failed = {"http_method": "POST", "path": "/cutoff"}
    source = await finished_batch(api, [OK, failed, not_found, ANSWERED_500, teapot, failed])
    paths = [op["path"] for op in source["batch_operations"]["data"]]

    async def selected(body: dict[str, Any]) -> list[str]:
        retried = await retry(api, source["id"], json=body, params={"expand[]": "batch_operations"})
        assert retried["batch_operations_count"] == len(retried["batch_operations"]["data"])
        assert {op["batch"] for op in retried["batch_operations"]["data"]} == {retried["id"]}
        return [op["path"] for op in retried["batch_operations"]["data"]]

    assert await selected({"response_statuses": ["404", "500"]}) == ["/status/404", "/status/500"]
    assert await selected({"response_statuses": ["4xx"]}) == ["/status/404", "/status/418"]
    assert await selected({"statuses": ["failed"], "response_statuses": ["418"]}) == [
        "/cutoff",
        "/status/418",
        "/cutoff",
    ]
    assert await selected({"statuses": ["completed", "failed"]}) == paths
    assert await selected({"statuses": None, "response_statuses": None}) == ["/cutoff", "/cutoff"]


async def test_retry_refusals(api: aiohttp.ClientSession) -> None:
    all_good = await finished_batch(api, [OK, OK])
    body = await retry(api, all_good["id"], 422)
    assert_error(body, "unprocessable_entity", "batch.retry.nothing_selected")
    body = await retry(api, all_good["id"], 422, json={"response_statuses": ["5xx"]})
    assert_error(body, "unprocessable_entity", "batch.retry.nothing_selected")

    for bad in ("6xx", "5x", "50", "5000", "abc", ""):
        body = await retry(api, all_good["id"], 422, json={"response_statuses": ["500", bad]})
        assert_error(body, "unprocessable_entity", "batch.retry.invalid")
        assert [e["attribute"] for e in body["validation_errors"]] == ["response_statuses[1]"]
    body = await retry(api, all_good["id"], 422, json={"statuses": ["failed", "bogus"]})
    assert_error(body, "unprocessable_entity", "batch.retry.invalid")
    assert [e["attribute"] for e in body["validation_errors"]] == ["statuses[1]"]
    malformed_bodies: list[Any] = [{"statuses": "failed"}, {"response_statuses": [500]}, [], "x"]
    for malformed in malformed_bodies:
        assert_error(await retry(api, all_good["id"], 400, json=malformed), "bad_request")
    assert_error(await retry(api, all_good["id"], 400, data=b"{"), "bad_request")

    unfinished = await create_batch(api, [SLOW])
    body = await retry(api, unfinished["id"], 422)
    assert_error(body, "unprocessable_entity", "batch.not_finished")
    await call(api, "POST", f"/v1/batches/{unfinished['id']}/cancel", 200)

    for unknown in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
        assert_error(await retry(api, unknown, 404), "not_found", "batch.not_found")


async def test_retry_of_another_tenants_batch_is_not_found(
    api: aiohttp.ClientSession, other_auth: dict[str, str]
) -> None:
    source = await finished_batch(api, [CUT_OFF])
    body = await retry(api, source["id"], 404, headers=other_auth)
    assert_error(body, "not_found", "batch.not_found")


async def test_a_repeated_retry_with_its_idempotency_key_returns_the_first(
    api: aiohttp.ClientSession,
) -> None:
    source = await finished_batch(api, [CUT_OFF, OK])
    key = {"Idempotency-Key": "retry-once"}
    first = await retry(api, source["id"], headers=key)
    second = await retry(api, source["id"], headers=key)
    assert second["id"] == first["id"]
    assert second["retry_of"] == source["id"]
    listed = await call(api, "GET", "/v1/batches", 200)
    assert listed["pagination"]["count"] == 2
    body = await retry(api, source["id"], 422, headers=key, json={"statuses": ["completed"]})
    assert_error(body, "unprocessable_entity", "batch.idempotency_key.reused")


async def test_delete_removes_the_batch_and_every_operation(
    http: aiohttp.ClientSession, stub: batch_pb2_grpc.BatchServiceStub
) -> None:
    kept = await finished_batch(http, [OK])
    source = await finished_batch(http, [OK, CUT_OFF, ANSWERED_500])
    operation_ids = [op["id"] for op in source["batch_operations"]["data"]]
    before = await call(http, "GET", "/v1/batch_operations", 200)

    body = await call(http, "DELETE", f"/v1/batches/{source['id']}", 404, headers=OTHER_AUTH)
    assert_error(body, "not_found", "batch.not_found")
    await call(http, "GET", f"/v1/batches/{source['id']}", 200)

    deleted = await call(http, "DELETE", f"/v1/batches/{source['id']}", 200)
    assert deleted == {"id": source["id"], "object": "batch", "deleted": True}

    assert_error(await call(http, "GET", f"/v1/batches/{source['id']}", 404), "not_found")
    for operation_id in operation_ids:
        body = await call(http, "GET", f"/v1/batch_operations/{operation_id}", 404)
        assert_error(body, "not_found", "batch_operation.not_found")
    listed = await call(http, "GET", f"/v1/batches?ids[]={source['id']}", 200)
    assert listed["pagination"]["count"] == 0
    batches = await call(http, "GET", "/v1/batches", 200)
    assert [batch["id"] for batch in batches["data"]] == [kept["id"]]
    after = await call(http, "GET", "/v1/batch_operations", 200)
    assert after["pagination"]["count"] == before["pagination"]["count"] - 3 == 1
    by_batch = await call(http, "GET", f"/v1/batch_operations?batch_ids[]={source['id']}", 200)
    assert by_batch["pagination"]["count"] == 0
    assert_error(await retry(http, source["id"], 404), "not_found", "batch.not_found")
    body = await call(http, "DELETE", f"/v1/batches/{source['id']}", 404)
    assert_error(body, "not_found", "batch.not_found")

    # The same over gRPC.
    for read in (
        stub.GetBatch(batch_pb2.GetBatchRequest(id=source["id"]), metadata=bearer()),
        stub.GetBatchOperation(
            batch_pb2.GetBatchOperationRequest(id=operation_ids[0]), metadata=bearer()
        ),
        stub.DeleteBatch(batch_pb2.DeleteBatchRequest(id=source["id"]), metadata=bearer()),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await read
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    reply = await stub.DeleteBatch(batch_pb2.DeleteBatchRequest(id=kept["id"]), metadata=bearer())
    assert reply.id == kept["id"]
    listed = await stub.ListBatchOperations(
        batch_pb2.ListBatchOperationsRequest(), metadata=bearer()
    )
    assert listed.total_size == 0


async def test_delete_forgets_the_idempotency_key(api: aiohttp.ClientSession) -> None:
    key = {"Idempotency-Key": "delete-me"}
    first = await create_batch(api, [OK], headers=key)
    await wait_completed(api, first["id"])
    await call(api, "DELETE", f"/v1/batches/{first['id']}", 200)
    second = await create_batch(api, [OK], headers=key)
    assert second["id"] != first["id"]


async def test_delete_of_an_unfinished_batch_is_refused(api: aiohttp.ClientSession) -> None:
    # One at a time: OK waits behind SLOW, so the cancel catches it unsent.
    document = {
        "batch": {"batch_operations": [SLOW, OK], "execution_options": {"sequential": True}}
    }
    unfinished = await call(api, "POST", "/v1/batches", 200, json=document)
    body = await call(api, "DELETE", f"/v1/batches/{unfinished['id']}", 422)
    assert_error(body, "unprocessable_entity", "batch.not_finished")
    assert (await call(api, "GET", f"/v1/batches/{unfinished['id']}", 200))["id"]
    await call(api, "POST", f"/v1/batches/{unfinished['id']}/cancel", 200)
    canceled = await wait_completed(api, unfinished["id"], status="canceled")
    assert canceled["status"] == "canceled"
    # A canceled batch has finished: it can be deleted, and its canceled part retried.
    retried = await retry(api, unfinished["id"], params={"expand[]": "batch_operations"})
    assert [op["path"] for op in retried["batch_operations"]["data"]] == ["/echo/ok"]
    await call(api, "DELETE", f"/v1/batches/{unfinished['id']}", 200)
    # The retry keeps naming its source after the source is gone.
    reply = await call(api, "GET", f"/v1/batches/{retried['id']}", 200)
    assert reply["id"] == retried["id"]


async def test_grpc_retry_names_its_source_and_keeps_its_options(
    shared_stub: batch_pb2_grpc.BatchServiceStub, api: aiohttp.ClientSession
) -> None:
    token = api.headers["Authorization"]
    metadata = (("authorization", token),)
    options = batch_pb2.ExecutionOptions(sequential=True, max_concurrency=3)
    failed = batch_pb2.BatchOperation(http_method=batch_pb2.HTTP_METHOD_POST, path="/cutoff")
    created = await shared_stub.CreateBatch(
        batch_pb2.CreateBatchRequest(
            batch=batch_pb2.Batch(batch_operations=[failed], execution_options=options)
        ),
        metadata=metadata,
    )
    await wait_completed(api, created.batch.id)
    reply = await shared_stub.RetryBatch(
        batch_pb2.RetryBatchRequest(id=created.batch.id, view=batch_pb2.BATCH_VIEW_FULL),
        metadata=metadata,
    )
    assert reply.batch.retry_of == created.batch.id
    assert reply.batch.execution_options == options
    assert [op.path for op in reply.batch.batch_operations] == ["/cutoff"]
    got = await shared_stub.GetBatch(
        batch_pb2.GetBatchRequest(id=reply.batch.id), metadata=metadata
    )
    assert got.batch.retry_of == created.batch.id
    assert not created.batch.retry_of
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await shared_stub.RetryBatch(
            batch_pb2.RetryBatchRequest(
                id=created.batch.id, statuses=[batch_pb2.BATCH_OPERATION_STATUS_COMPLETED]
            ),
            metadata=metadata,
        )
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
