"""Conditional reads: every read of a batch, an operation or a list carries an ETag, and
If-None-Match with it is a 304 without a body until the object changes; the check never
lets a caller learn about another tenant's objects."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.rest import assert_error, call, create_batch, wait_completed

pytestmark = pytest.mark.both_gateways

SLOW = {"http_method": "GET", "path": "/slow/0.5/item"}
FAST = {"http_method": "GET", "path": "/echo/item"}


async def tagged(http: aiohttp.ClientSession, path: str, **kwargs: Any) -> tuple[str, Any]:
    """The ETag and JSON of a 200 read."""
    async with http.get(path, **kwargs) as response:
        assert response.status == 200, await response.text()
        tag = response.headers["ETag"]
        return tag, await response.json()


async def status_of(
    http: aiohttp.ClientSession, path: str, if_none_match: str, **kwargs: Any
) -> tuple[int, bytes, str | None]:
    headers = {"If-None-Match": if_none_match, **kwargs.pop("headers", {})}
    async with http.get(path, headers=headers, **kwargs) as response:
        return response.status, await response.read(), response.headers.get("ETag")


async def test_an_unchanged_object_is_not_modified(api: aiohttp.ClientSession) -> None:
    created = await create_batch(api, [FAST])
    batch = await wait_completed(api, created["id"])
    [operation] = batch["batch_operations"]["data"]
    for path in (
        f"/v1/batches/{created['id']}",
        f"/v1/batches/{created['id']}?expand[]=batch_operations",
        f"/v1/batch_operations/{operation['id']}",
        f"/v1/batch_operations/{operation['id']}?expand[]=batch",
        f"/v1/batches?ids[]={created['id']}",
        f"/v1/batch_operations?batch_ids[]={created['id']}",
    ):
        tag, _ = await tagged(api, path)
        assert tag.startswith('"') and tag.endswith('"') and len(tag) > 2
        assert await tagged(api, path) == (tag, _), "the same answer, the same tag"
        weak = f"W/{tag}"
        for header in (tag, weak, f'"other", {weak}', f'"a,b",{tag}', "*"):
            status, body, echoed = await status_of(api, path, header)
            assert (status, body, echoed) == (304, b"", tag), (path, header)
        for header in ('"other"', tag.strip('"'), f'"x" {tag}', ""):
            status, _, echoed = await status_of(api, path, header)
            assert (status, echoed) == (200, tag), (path, header)


async def test_a_304_keeps_the_request_id(api: aiohttp.ClientSession) -> None:
    created = await create_batch(api, [FAST])
    # Finished, so that nothing changes it between the two reads.
    await wait_completed(api, created["id"])
    path = f"/v1/batches/{created['id']}"
    tag, _ = await tagged(api, path)
    async with api.get(path, headers={"If-None-Match": tag, "X-Request-Id": "poll-1"}) as reply:
        assert reply.status == 304
        assert reply.headers["X-Request-Id"] == "poll-1"


async def test_a_change_is_a_200_with_a_new_tag(api: aiohttp.ClientSession) -> None:
    created = await create_batch(api, [SLOW])
    batch_path = f"/v1/batches/{created['id']}"
    batch_tag, before = await tagged(api, batch_path)
    assert before["status"] != "completed"
    [operation] = (await wait_completed(api, created["id"], expand=True, status="in_progress"))[
        "batch_operations"
    ]["data"]
    operation_path = f"/v1/batch_operations/{operation['id']}"
    operation_tag, pending = await tagged(api, operation_path)
    assert pending["status"] != "completed"
    lists = f"/v1/batches?ids[]={created['id']}"
    list_tag, _ = await tagged(api, lists)

    await wait_completed(api, created["id"])
    for path, old_tag in (
        (batch_path, batch_tag),
        (operation_path, operation_tag),
        (lists, list_tag),
    ):
        status, body, new_tag = await status_of(api, path, old_tag)
        assert status == 200 and body and new_tag not in (None, old_tag), path
        assert new_tag is not None
        status, _, _ = await status_of(api, path, new_tag)
        assert status == 304, path


async def test_another_tenant_gets_its_404_whatever_it_sends(
    api: aiohttp.ClientSession, other_auth: dict[str, str]
) -> None:
    created = await create_batch(api, [FAST])
    batch = await wait_completed(api, created["id"])
    [operation] = batch["batch_operations"]["data"]
    for path in (f"/v1/batches/{created['id']}", f"/v1/batch_operations/{operation['id']}"):
        tag, _ = await tagged(api, path)
        for header in (tag, "*"):
            body = await call(
                api, "GET", path, 404, headers={**other_auth, "If-None-Match": header}
            )
            assert_error(body, "not_found")
            body = await call(
                api, "GET", path, 401, headers={"Authorization": "", "If-None-Match": header}
            )
            assert_error(body, "unauthorized")
