"""Helpers for tests of the REST gateway: auth headers, calls, and the contract's shapes."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.processes import OTHER_TOKEN, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
OTHER_AUTH = {"Authorization": f"Bearer {OTHER_TOKEN}"}

BATCH_KEYS = {
    "id",
    "object",
    "finished_batch_operations_count",
    "batch_operations_count",
    "status",
    "created_at",
    "updated_at",
    # Issue 15: the caller's metadata, `{}` when none.
    "metadata",
}
OUTCOME_COUNT_KEYS = {
    "completed",
    "failed",
    "timed_out",
    "canceled",
    "responses_2xx",
    "responses_3xx",
    "responses_4xx",
    "responses_5xx",
}
OPERATION_KEYS = {
    "id",
    "object",
    "body",
    "http_method",
    "path",
    "query_params",
    "response_body",
    "response_status",
    "status",
    "batch",
    "created_at",
    "updated_at",
}
ERROR_KEYS = {"http_status", "type", "code", "message", "validation_errors"}
VALIDATION_ERROR_KEYS = {"attribute", "type", "code", "options", "message"}
BATCH_STATUSES = {"pending", "in_progress", "completed"}
OPERATION_STATUSES = {"pending", "in_progress", "completed", "failed", "timed_out"}
# The extensions beyond the contract (cancel, stop_on_failure) add one status to each.
EXTENDED_BATCH_STATUSES = BATCH_STATUSES | {"canceled"}
EXTENDED_OPERATION_STATUSES = OPERATION_STATUSES | {"canceled"}


async def call(
    http: aiohttp.ClientSession, method: str, path: str, status: int, **kwargs: Any
) -> Any:
    """The JSON answer of a request, after checking its HTTP status and content type."""
    async with http.request(method, path, **kwargs) as response:
        text = await response.text()
        assert response.status == status, text
        assert response.content_type == "application/json", text
        return await response.json()


async def create_batch(
    http: aiohttp.ClientSession, operations: list[dict[str, Any]], **kwargs: Any
) -> dict[str, Any]:
    document = {"batch": {"batch_operations": operations}}
    batch: dict[str, Any] = await call(http, "POST", "/v1/batches", 200, json=document, **kwargs)
    return batch


async def wait_completed(
    http: aiohttp.ClientSession,
    batch_id: str,
    timeout: float = 30,
    status: str = "completed",
    expand: bool = True,
    **kwargs: Any,
) -> dict[str, Any]:
    """The batch (with its operations expanded, unless not `expand`), once it reaches `status`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    path = f"/v1/batches/{batch_id}" + ("?expand[]=batch_operations" if expand else "")
    while loop.time() < deadline:
        batch: dict[str, Any] = await call(http, "GET", path, 200, **kwargs)
        if batch["status"] == status:
            return batch
        await asyncio.sleep(0.02)
    raise TimeoutError(f"batch {batch_id} did not complete")


def assert_error(body: Any, http_status: str, code: str | None = None) -> None:
    assert set(body) == ERROR_KEYS, body
    assert body["http_status"] == http_status
    assert body["type"] == http_status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["code"], str) and body["code"]
    if code is not None:
        assert body["code"] == code, body
    assert isinstance(body["validation_errors"], list)
    for error in body["validation_errors"]:
        assert set(error) == VALIDATION_ERROR_KEYS, error
        assert error["options"] == {}
        assert error["type"] == error["code"].rsplit(".", 1)[-1]


def attributes(body: Any) -> list[str]:
    return [error["attribute"] for error in body["validation_errors"]]


def assert_batch(
    body: Any, expanded: bool = False, extended: bool = False, counted: bool = False
) -> None:
    """`extended` allows the statuses of the extensions beyond the contract; `counted`:
    expanded with outcome_counts."""
    added = {"batch_operations"} if expanded else set()
    assert set(body) == BATCH_KEYS | added | ({"outcome_counts"} if counted else set()), body
    assert isinstance(body["metadata"], dict)
    assert all(type(v) is str for v in body["metadata"].values())
    if counted:
        assert set(body["outcome_counts"]) == OUTCOME_COUNT_KEYS
        assert all(type(n) is int for n in body["outcome_counts"].values())
    assert body["object"] == "batch"
    assert body["status"] in (EXTENDED_BATCH_STATUSES if extended else BATCH_STATUSES)
    for key in ("finished_batch_operations_count", "batch_operations_count"):
        assert type(body[key]) is int
    for key in ("created_at", "updated_at"):
        assert type(body[key]) is int
    if expanded:
        assert_list(body["batch_operations"], "/v1/batch_operations")
        for operation in body["batch_operations"]["data"]:
            assert_operation(operation, extended=extended)


def assert_operation(body: Any, expanded: bool = False, extended: bool = False) -> None:
    assert set(body) == OPERATION_KEYS, body
    assert body["object"] == "batch_operation"
    assert body["http_method"] in {"DELETE", "GET", "PATCH", "POST", "PUT"}
    assert body["status"] in (EXTENDED_OPERATION_STATUSES if extended else OPERATION_STATUSES)
    assert body["body"] is None or isinstance(body["body"], dict)
    assert body["query_params"] is None or isinstance(body["query_params"], dict)
    assert body["response_status"] is None or type(body["response_status"]) is int
    for key in ("created_at", "updated_at"):
        assert type(body[key]) is int
    if expanded:
        assert_batch(body["batch"], extended=extended)
    else:
        assert isinstance(body["batch"], str)


def assert_list(body: Any, url: str) -> None:
    assert set(body) == {"object", "pagination", "data"}, body
    assert body["object"] == "list"
    assert set(body["pagination"]) == {"count", "limit", "page", "url"}
    assert body["pagination"]["url"] == url
    assert all(type(body["pagination"][key]) is int for key in ("count", "limit", "page"))
    assert isinstance(body["data"], list)
