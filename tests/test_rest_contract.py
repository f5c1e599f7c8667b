"""The REST gateway against the contract, key by key, with the real service and upstream."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

from tests.rest import (
    AUTH,
    assert_batch,
    assert_error,
    assert_list,
    assert_operation,
    call,
    create_batch,
    wait_completed,
)
from tests.upstream import JSON_BODIES, UpstreamLog

pytestmark = pytest.mark.both_gateways

GET_PRODUCTS = {"http_method": "GET", "path": "/echo/products"}


async def test_create_returns_the_batch_object(api: aiohttp.ClientSession) -> None:
    batch = await create_batch(api, [GET_PRODUCTS, GET_PRODUCTS])
    assert_batch(batch)
    assert batch["batch_operations_count"] == 2
    assert 0 <= batch["finished_batch_operations_count"] <= 2
    # Unix seconds, not milliseconds: within a day of this machine's clock.
    assert abs(batch["created_at"] - time.time()) < 86_400
    assert batch["updated_at"] >= batch["created_at"]


async def test_a_completed_batch_shows_every_response(
    http: aiohttp.ClientSession, upstream_server: tuple[str, UpstreamLog]
) -> None:
    created = await create_batch(
        http,
        [
            {"http_method": "GET", "path": "/echo/products", "query_params": {"ids": ["a", "b"]}},
            {"http_method": "POST", "path": "/echo/products", "body": {"product": {"qty": 2}}},
            {"http_method": "DELETE", "path": "/status/404", "body": None, "query_params": None},
        ],
    )
    batch = await wait_completed(http, created["id"])
    assert_batch(batch, expanded=True)
    assert batch["id"] == created["id"]
    assert batch["finished_batch_operations_count"] == batch["batch_operations_count"] == 3
    operations = batch["batch_operations"]
    assert operations["pagination"] == {
        "count": 3,
        "limit": 3,
        "page": 1,
        "url": "/v1/batch_operations",
    }
    get, post, delete = operations["data"]
    assert [op["batch"] for op in operations["data"]] == [created["id"]] * 3
    assert [op["status"] for op in operations["data"]] == ["completed"] * 3
    assert get["http_method"] == "GET"
    assert get["path"] == "/echo/products"
    assert get["query_params"] == {"ids": ["a", "b"]}
    assert get["body"] is None
    assert get["response_status"] == 200
    assert get["response_body"] == {
        "method": "GET",
        "path": "/echo/products",
        "query": "ids[]=a&ids[]=b",
        "body": None,
    }
    assert post["http_method"] == "POST"
    assert post["body"] == {"product": {"qty": 2}}
    assert post["query_params"] is None
    assert post["response_body"]["body"] == {"product": {"qty": 2}}
    assert delete["http_method"] == "DELETE"
    assert delete["response_status"] == 404
    assert delete["response_body"] == {"status": 404}
    assert {r.headers["Authorization"] for r in upstream_server[1].requests} == {
        AUTH["Authorization"]
    }


async def test_response_bodies_of_every_json_kind_read_back_as_written(
    http: aiohttp.ClientSession,
) -> None:
    kinds = list(JSON_BODIES)
    created = await create_batch(
        http, [{"http_method": "GET", "path": f"/json/{kind}"} for kind in kinds]
    )
    batch = await wait_completed(http, created["id"])
    shown = {op["path"]: op["response_body"] for op in batch["batch_operations"]["data"]}
    assert shown == {f"/json/{kind}": json.loads(JSON_BODIES[kind]) for kind in kinds}


async def test_create_can_expand_its_operations(api: aiohttp.ClientSession) -> None:
    document = {"batch": {"batch_operations": [GET_PRODUCTS, {**GET_PRODUCTS, "path": "/x"}]}}
    path = "/v1/batches?expand[]=batch_operations"
    batch = await call(api, "POST", path, 200, json=document)
    assert_batch(batch, expanded=True)
    data = batch["batch_operations"]["data"]
    assert [op["path"] for op in data] == ["/echo/products", "/x"]
    assert all(op["response_status"] is None and op["response_body"] is None for op in data)


async def test_retrieve_a_batch_and_an_operation(api: aiohttp.ClientSession) -> None:
    created = await create_batch(api, [GET_PRODUCTS])
    completed = await wait_completed(api, created["id"])
    batch = await call(api, "GET", f"/v1/batches/{created['id']}", 200)
    assert_batch(batch)
    assert batch == {key: completed[key] for key in batch}
    operation_id = completed["batch_operations"]["data"][0]["id"]
    operation = await call(api, "GET", f"/v1/batch_operations/{operation_id}", 200)
    assert_operation(operation)
    assert operation == completed["batch_operations"]["data"][0]


async def test_an_operation_can_expand_its_batch(api: aiohttp.ClientSession) -> None:
    created = await create_batch(api, [GET_PRODUCTS])
    completed = await wait_completed(api, created["id"])
    operation_id = completed["batch_operations"]["data"][0]["id"]
    path = f"/v1/batch_operations/{operation_id}?expand[]=batch"
    operation = await call(api, "GET", path, 200)
    assert_operation(operation, expanded=True)
    assert operation["batch"] == await call(api, "GET", f"/v1/batches/{created['id']}", 200)


async def test_listed_operations_can_expand_their_batches(api: aiohttp.ClientSession) -> None:
    first = await create_batch(api, [GET_PRODUCTS, GET_PRODUCTS])
    second = await create_batch(api, [GET_PRODUCTS])
    for batch in (first, second):
        await wait_completed(api, batch["id"])
    listed = await call(api, "GET", "/v1/batch_operations?expand[]=batch", 200)
    assert_list(listed, "/v1/batch_operations")
    assert listed["pagination"]["count"] == 3
    for operation in listed["data"]:
        assert_operation(operation, expanded=True)
    batches = {op["batch"]["id"]: op["batch"] for op in listed["data"]}
    assert set(batches) == {first["id"], second["id"]}
    assert batches[first["id"]]["batch_operations_count"] == 2


async def test_lists_paginate_with_the_total_count(api: aiohttp.ClientSession) -> None:
    created = [(await create_batch(api, [GET_PRODUCTS]))["id"] for _ in range(5)]
    pages = [await call(api, "GET", f"/v1/batches?limit=2&page={n}", 200) for n in (1, 2, 3, 4)]
    for number, page in enumerate(pages, start=1):
        assert_list(page, "/v1/batches")
        assert page["pagination"] == {"count": 5, "limit": 2, "page": number, "url": "/v1/batches"}
        for batch in page["data"]:
            assert_batch(batch)
    assert [len(page["data"]) for page in pages] == [2, 2, 1, 0]
    listed = [batch["id"] for page in pages for batch in page["data"]]
    assert sorted(listed) == sorted(created)
    default = await call(api, "GET", "/v1/batches", 200)
    assert default["pagination"] == {"count": 5, "limit": 20, "page": 1, "url": "/v1/batches"}
    assert [batch["id"] for batch in default["data"]] == listed


async def test_sort_orders_both_ways(api: aiohttp.ClientSession) -> None:
    for _ in range(4):
        await create_batch(api, [GET_PRODUCTS])

    async def ids(path: str) -> list[str]:
        listed = await call(api, "GET", path, 200)
        return [item["id"] for item in listed["data"]]

    for resource in ("batches", "batch_operations"):
        base = f"/v1/{resource}"
        newest_first = await ids(f"{base}?sort=created_at:desc")
        assert len(newest_first) == 4
        assert await ids(f"{base}?sort=created_at:asc") == newest_first[::-1]
        assert await ids(base) == newest_first
        by_update = await call(api, "GET", f"{base}?sort=updated_at:asc", 200)
        times = [item["updated_at"] for item in by_update["data"]]
        assert times == sorted(times)


async def test_batch_filters(api: aiohttp.ClientSession) -> None:
    ids = [(await create_batch(api, [GET_PRODUCTS]))["id"] for _ in range(3)]
    for batch_id in ids:
        await wait_completed(api, batch_id)
    query = f"ids[]={ids[0]}&ids[]={ids[2]}"
    chosen = await call(api, "GET", f"/v1/batches?{query}", 200)
    assert chosen["pagination"]["count"] == 2
    assert {batch["id"] for batch in chosen["data"]} == {ids[0], ids[2]}
    completed = await call(api, "GET", "/v1/batches?status[]=completed", 200)
    assert completed["pagination"]["count"] == 3
    pending = await call(api, "GET", "/v1/batches?status[]=pending&status[]=in_progress", 200)
    assert pending["pagination"]["count"] == 0
    assert pending["data"] == []
    both = await call(api, "GET", f"/v1/batches?{query}&status[]=completed", 200)
    assert both["pagination"]["count"] == 2


async def test_operation_filters(api: aiohttp.ClientSession) -> None:
    ok = await create_batch(api, [GET_PRODUCTS, GET_PRODUCTS])
    # A POST cut off mid-response is not retried: it fails.
    cut = await create_batch(api, [{"http_method": "POST", "path": "/cutoff"}, GET_PRODUCTS])
    for batch in (ok, cut):
        await wait_completed(api, batch["id"])
    of_cut = await call(api, "GET", f"/v1/batch_operations?batch_ids[]={cut['id']}", 200)
    assert of_cut["pagination"]["count"] == 2
    assert {op["batch"] for op in of_cut["data"]} == {cut["id"]}
    failed = await call(api, "GET", "/v1/batch_operations?status[]=failed", 200)
    assert failed["pagination"]["count"] == 1
    [failure] = failed["data"]
    assert failure["path"] == "/cutoff"
    assert failure["status"] == "failed"
    completed = await call(
        api, "GET", f"/v1/batch_operations?status[]=completed&batch_ids[]={ok['id']}", 200
    )
    assert completed["pagination"]["count"] == 2
    either = await call(api, "GET", "/v1/batch_operations?status[]=completed&status[]=failed", 200)
    assert either["pagination"]["count"] == 4


async def test_tenants_never_see_each_other(
    api: aiohttp.ClientSession, other_auth: dict[str, str]
) -> None:
    mine = await create_batch(api, [GET_PRODUCTS])
    theirs = await create_batch(api, [GET_PRODUCTS, GET_PRODUCTS], headers=other_auth)
    completed = await wait_completed(api, mine["id"])
    operation_id = completed["batch_operations"]["data"][0]["id"]
    for path, code in (
        (f"/v1/batches/{mine['id']}", "batch.not_found"),
        (f"/v1/batch_operations/{operation_id}", "batch_operation.not_found"),
    ):
        body = await call(api, "GET", path, 404, headers=other_auth)
        assert_error(body, "not_found", code)
    their_batches = await call(api, "GET", "/v1/batches", 200, headers=other_auth)
    assert [batch["id"] for batch in their_batches["data"]] == [theirs["id"]]
    assert their_batches["pagination"]["count"] == 1
    asked_for_mine = await call(
        api, "GET", f"/v1/batches?ids[]={mine['id']}", 200, headers=other_auth
    )
    assert asked_for_mine["pagination"]["count"] == 0
    their_operations = await call(
        api, "GET", f"/v1/batch_operations?batch_ids[]={mine['id']}", 200, headers=other_auth
    )
    assert their_operations["pagination"]["count"] == 0
    all_theirs = await call(api, "GET", "/v1/batch_operations", 200, headers=other_auth)
    assert all_theirs["pagination"]["count"] == 2
    assert {op["batch"] for op in all_theirs["data"]} == {theirs["id"]}


async def test_healthz(api: aiohttp.ClientSession) -> None:
    body: Any = await call(api, "GET", "/healthz", 200)
    assert body == {"status": "ok"}
