"""Batch metadata (issue 15): stored as sent, returned on every batch representation over
REST and gRPC, copied by a retry, filtered on by lists; bad metadata is a 422 naming its key."""

from __future__ import annotations

from typing import Any

import aiohttp
import grpc
import pytest

from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests.grpc_client import GET, bearer, details, operation, wait_completed
from tests.rest import assert_batch, assert_error, attributes, call
from tests.shared_stack import fresh_token

ECHO = {"http_method": "GET", "path": "/echo/m"}
# Unicode in keys and values, a key holding the characters JSON paths and SQL quote,
# an empty value: all kept exactly as sent.
LABELS = {
    "order_id": "6735",
    "客户": "Zoë 🚀",
    "a\"b.$c'd": "quoted",
    "empty": "",
    "x" * 40: "v" * 500,
}


async def create(api: aiohttp.ClientSession, metadata: Any, status: int = 200) -> Any:
    document = {"batch": {"batch_operations": [ECHO], "metadata": metadata}}
    return await call(api, "POST", "/v1/batches", status, json=document)


async def listed(api: aiohttp.ClientSession, query: str, status: int = 200) -> Any:
    return await call(api, "GET", f"/v1/batches?{query}", status)


# --- round trips -----------------------------------------------------------------------


async def test_metadata_round_trips_over_rest_on_every_representation(
    api: aiohttp.ClientSession,
) -> None:
    created = await create(api, LABELS)
    assert_batch(created)
    assert created["metadata"] == LABELS
    fetched = await call(api, "GET", f"/v1/batches/{created['id']}", 200)
    assert fetched["metadata"] == LABELS
    expanded = await call(api, "GET", f"/v1/batches/{created['id']}?expand[]=batch_operations", 200)
    assert expanded["metadata"] == LABELS
    [in_list] = (await listed(api, "limit=5"))["data"]
    assert in_list["metadata"] == LABELS
    operations = await call(
        api, "GET", f"/v1/batch_operations?batch_ids[]={created['id']}&expand[]=batch", 200
    )
    assert operations["data"][0]["batch"]["metadata"] == LABELS


async def test_a_batch_without_metadata_shows_an_empty_object(api: aiohttp.ClientSession) -> None:
    sent: dict[str, str] | None
    for sent in (None, {}):
        created = await create(api, sent)
        assert created["metadata"] == {}
    document = {"batch": {"batch_operations": [ECHO]}}
    absent = await call(api, "POST", "/v1/batches", 200, json=document)
    assert absent["metadata"] == {}
    assert (await call(api, "GET", f"/v1/batches/{absent['id']}", 200))["metadata"] == {}


async def test_metadata_round_trips_over_grpc(
    shared_stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    token = fresh_token()
    batch = batch_pb2.Batch(batch_operations=[operation(GET, "/echo/g")], metadata=LABELS)
    created = await shared_stub.CreateBatch(
        batch_pb2.CreateBatchRequest(batch=batch), metadata=bearer(token)
    )
    assert dict(created.batch.metadata) == LABELS
    got = await shared_stub.GetBatch(
        batch_pb2.GetBatchRequest(id=created.batch.id), metadata=bearer(token)
    )
    assert dict(got.batch.metadata) == LABELS
    listed_reply = await shared_stub.ListBatches(
        batch_pb2.ListBatchesRequest(metadata={"order_id": "6735"}), metadata=bearer(token)
    )
    assert [b.id for b in listed_reply.batches] == [created.batch.id]
    assert dict(listed_reply.batches[0].metadata) == LABELS


async def test_a_retry_copies_its_source_batchs_metadata(
    shared_stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    token = fresh_token()
    batch = batch_pb2.Batch(
        batch_operations=[operation(batch_pb2.HTTP_METHOD_POST, "/cutoff")],
        metadata={"import": "42"},
    )
    created = await shared_stub.CreateBatch(
        batch_pb2.CreateBatchRequest(batch=batch), metadata=bearer(token)
    )
    await wait_completed(shared_stub, created.batch.id, token=token)
    retried = await shared_stub.RetryBatch(
        batch_pb2.RetryBatchRequest(id=created.batch.id), metadata=bearer(token)
    )
    assert dict(retried.batch.metadata) == {"import": "42"}
    found = await shared_stub.ListBatches(
        batch_pb2.ListBatchesRequest(metadata={"import": "42"}), metadata=bearer(token)
    )
    assert {b.id for b in found.batches} == {created.batch.id, retried.batch.id}


async def test_an_idempotent_repeat_with_other_metadata_is_refused(
    api: aiohttp.ClientSession,
) -> None:
    headers = {"Idempotency-Key": "meta-1"}
    document = {"batch": {"batch_operations": [ECHO], "metadata": {"a": "1"}}}
    first = await call(api, "POST", "/v1/batches", 200, json=document, headers=headers)
    again = await call(api, "POST", "/v1/batches", 200, json=document, headers=headers)
    assert again["id"] == first["id"] and again["metadata"] == {"a": "1"}
    document["batch"]["metadata"] = {"a": "2"}
    refused = await call(api, "POST", "/v1/batches", 422, json=document, headers=headers)
    assert_error(refused, "unprocessable_entity", "batch.idempotency_key.reused")


# --- bad metadata ----------------------------------------------------------------------

BAD_METADATA = [
    pytest.param({"count": 3}, "metadata[count]", "batch.metadata.value.invalid", id="number"),
    pytest.param({"n": {"x": "y"}}, "metadata[n]", "batch.metadata.value.invalid", id="nested"),
    pytest.param({"t": True}, "metadata[t]", "batch.metadata.value.invalid", id="boolean"),
    pytest.param({"z": None}, "metadata[z]", "batch.metadata.value.invalid", id="null-value"),
    pytest.param({"l": ["a"]}, "metadata[l]", "batch.metadata.value.invalid", id="list-value"),
    pytest.param(["a", "b"], "metadata", "batch.metadata.invalid", id="list"),
    pytest.param("order=1", "metadata", "batch.metadata.invalid", id="string"),
    pytest.param({"": "v"}, "metadata[]", "batch.metadata.key.blank", id="empty-key"),
    pytest.param({"k" * 41: "v"}, f"metadata[{'k' * 41}]", "batch.metadata.key.too_long", id="41"),
    pytest.param({"k": "v" * 501}, "metadata[k]", "batch.metadata.value.too_long", id="501"),
    pytest.param({"a[b]": "v"}, "metadata[a[b]]", "batch.metadata.key.invalid", id="brackets"),
    pytest.param({"n\u0000ul": "v"}, "metadata[n\u0000ul]", "batch.metadata.key.invalid", id="nul"),
    pytest.param({"k": "a\u0000"}, "metadata[k]", "batch.metadata.value.invalid", id="nul-value"),
    pytest.param(
        {f"k{n}": "v" for n in range(51)}, "metadata", "batch.metadata.too_many_keys", id="51"
    ),
]


@pytest.mark.parametrize(("metadata", "attribute", "code"), BAD_METADATA)
async def test_bad_metadata_is_a_422_naming_the_key(
    api: aiohttp.ClientSession, metadata: Any, attribute: str, code: str
) -> None:
    refused = await create(api, metadata, status=422)
    assert_error(refused, "unprocessable_entity", "batch.invalid")
    assert attributes(refused) == [attribute]
    assert refused["validation_errors"][0]["code"] == code
    assert (await listed(api, "limit=5"))["data"] == []  # nothing was stored


async def test_every_bad_key_is_named_at_once(api: aiohttp.ClientSession) -> None:
    refused = await create(api, {"a": 1, "b": "ok", "c": {}}, status=422)
    assert attributes(refused) == ["metadata[a]", "metadata[c]"]


async def test_the_largest_metadata_stripe_allows_is_accepted(api: aiohttp.ClientSession) -> None:
    largest = {f"{n:02d}".ljust(40, "k"): "v" * 500 for n in range(50)}
    created = await create(api, largest)
    assert created["metadata"] == largest


async def test_a_lone_surrogate_in_metadata_is_a_400(api: aiohttp.ClientSession) -> None:
    raw = b'{"batch": {"batch_operations": [{"http_method": "GET", "path": "/e"}],'
    raw += b' "metadata": {"k": "\\ud800"}}}'
    headers = {"Content-Type": "application/json"}
    refused = await call(api, "POST", "/v1/batches", 400, data=raw, headers=headers)
    assert_error(refused, "bad_request")


async def test_grpc_reports_bad_metadata_as_field_violations(
    shared_stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    batch = batch_pb2.Batch(
        batch_operations=[operation(GET, "/echo/g")], metadata={"k" * 41: "v", "ok": "v" * 501}
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await shared_stub.CreateBatch(
            batch_pb2.CreateBatchRequest(batch=batch), metadata=bearer(fresh_token())
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, violations = details(raised.value)
    assert reason == "batch.invalid"
    assert violations == [
        (f"metadata[{'k' * 41}]", "batch.metadata.key.too_long"),
        ("metadata[ok]", "batch.metadata.value.too_long"),
    ]


# --- filters ---------------------------------------------------------------------------


async def test_lists_filter_on_every_given_key_and_value_exactly(
    api: aiohttp.ClientSession,
) -> None:
    red = await create(api, {"color": "red", "size": "L", "客户": "Zoë"})
    blue = await create(api, {"color": "blue", "size": "L"})
    plain = await create(api, None)
    quoted = await create(api, {'a"b.$c': "x"})

    async def ids(query: str) -> set[str]:
        return {batch["id"] for batch in (await listed(api, query))["data"]}

    assert await ids("metadata[color]=red") == {red["id"]}
    assert await ids("metadata[size]=L") == {red["id"], blue["id"]}
    assert await ids("metadata[size]=L&metadata[color]=blue") == {blue["id"]}
    assert await ids("metadata[color]=RED") == set()  # exact, case and all
    assert await ids("metadata[color]=") == set()
    assert await ids("metadata[missing]=red") == set()
    assert await ids("metadata[%E5%AE%A2%E6%88%B7]=Zo%C3%AB") == {red["id"]}
    assert await ids("metadata[a%22b.%24c]=x") == {quoted["id"]}
    assert await ids("limit=10") == {red["id"], blue["id"], plain["id"], quoted["id"]}
    counted = await listed(api, "metadata[size]=L&limit=1")
    assert counted["pagination"]["count"] == 2 and len(counted["data"]) == 1


async def test_a_filter_never_finds_another_tenants_batches(
    api: aiohttp.ClientSession, other_auth: dict[str, str]
) -> None:
    await create(api, {"secret": "s1"})
    found = await call(api, "GET", "/v1/batches?metadata[secret]=s1", 200, headers=other_auth)
    assert found["data"] == [] and found["pagination"]["count"] == 0


@pytest.mark.parametrize(
    "query",
    [
        "metadata[k]=a&metadata[k]=b",  # which value?
        "metadata=k",
        "metadata[k=v",
    ],
)
async def test_a_metadata_filter_of_the_wrong_form_is_a_400(
    api: aiohttp.ClientSession, query: str
) -> None:
    assert_error(await listed(api, query, status=400), "bad_request")


@pytest.mark.parametrize(
    ("query", "attribute", "code"),
    [
        (f"metadata[{'k' * 41}]=v", f"metadata[{'k' * 41}]", "list.metadata.key.too_long"),
        (f"metadata[k]={'v' * 501}", "metadata[k]", "list.metadata.value.too_long"),
        ("metadata[]=v", "metadata[]", "list.metadata.key.blank"),
    ],
)
async def test_a_metadata_filter_no_metadata_could_match_is_a_422(
    api: aiohttp.ClientSession, query: str, attribute: str, code: str
) -> None:
    refused = await listed(api, query, status=422)
    assert_error(refused, "unprocessable_entity", "list.invalid")
    assert attributes(refused) == [attribute]
    assert refused["validation_errors"][0]["code"] == code
