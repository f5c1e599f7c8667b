"""Webhook endpoints over REST and gRPC: their shapes, tenants kept apart, and every kind
of bad input answered in the contract's error format (REST) or with BadRequest (gRPC)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest

from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests.grpc_client import bearer, details
from tests.processes import API_TOKENS, Process, batchd_env, free_port, start_batchd
from tests.rest import AUTH, OTHER_AUTH, assert_error, assert_list, attributes, call

ENDPOINT_KEYS = {"id", "object", "url", "webhook_events", "created_at", "updated_at"}
PATH = "/v1/webhook_endpoints"
# A tenant of its own for the test that fills its endpoints up.
FULL_AUTH = {"Authorization": "Bearer token-full"}
MISSING = f"{PATH}/00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
async def batchd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, str]]:
    """The REST base URL and the gRPC target of one batchd for the module."""
    tmp_path = tmp_path_factory.mktemp("webhook_endpoints")
    env = batchd_env(
        tmp_path,
        BATCH_API_TOKENS=f"{API_TOKENS},token-full:tenant-full",
        # No batch runs here: nothing is sent to it.
        BATCH_UPSTREAM_URL=f"http://127.0.0.1:{free_port()}",
    )
    process: Process
    process, url = await start_batchd(env, tmp_path)
    yield url, env["BATCH_GRPC_ADDRESS"]
    await process.stop()


@pytest.fixture
async def http(batchd: tuple[str, str]) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=batchd[0], headers=AUTH) as session:
        yield session


@pytest.fixture
async def stub(batchd: tuple[str, str]) -> AsyncIterator[batch_pb2_grpc.BatchServiceStub]:
    async with grpc.aio.insecure_channel(batchd[1]) as channel:
        yield batch_pb2_grpc.BatchServiceStub(channel)


def body(url: Any = "https://hooks.example.com/batchd", events: Any = None) -> dict[str, Any]:
    endpoint = {"url": url, "webhook_events": ["batch.completed"] if events is None else events}
    return {"webhook_endpoint": endpoint}


async def test_an_endpoint_shows_its_secret_once_and_lists_reads_and_deletes(
    http: aiohttp.ClientSession,
) -> None:
    created = await call(http, "POST", PATH, 200, json=body(events=["batch.canceled"]))
    assert set(created) == ENDPOINT_KEYS | {"signing_secret"}
    assert created["object"] == "webhook_endpoint"
    assert created["url"] == "https://hooks.example.com/batchd"
    assert created["webhook_events"] == ["batch.canceled"]
    assert created["signing_secret"].startswith("whsec_")
    assert type(created["created_at"]) is int
    read = await call(http, "GET", f"{PATH}/{created['id']}", 200)
    assert read == {key: created[key] for key in ENDPOINT_KEYS}
    listed = await call(http, "GET", f"{PATH}?limit=100", 200)
    assert_list(listed, PATH)
    assert read in listed["data"]
    assert listed["pagination"]["count"] == len(listed["data"])
    deliveries = await call(http, "GET", f"{PATH}/{created['id']}/deliveries", 200)
    assert_list(deliveries, f"{PATH}/{created['id']}/deliveries")
    assert deliveries["data"] == []
    deleted = await call(http, "DELETE", f"{PATH}/{created['id']}", 200)
    assert deleted == {"id": created["id"], "object": "webhook_endpoint", "deleted": True}
    gone = await call(http, "GET", f"{PATH}/{created['id']}", 404)
    assert_error(gone, "not_found", "webhook_endpoint.not_found")


async def test_another_tenants_endpoint_is_not_found(http: aiohttp.ClientSession) -> None:
    created = await call(http, "POST", PATH, 200, json=body())
    endpoint = f"{PATH}/{created['id']}"
    for method, path in [
        ("GET", endpoint),
        ("DELETE", endpoint),
        ("GET", f"{endpoint}/deliveries"),
    ]:
        answer = await call(http, method, path, 404, headers=OTHER_AUTH)
        assert_error(answer, "not_found", "webhook_endpoint.not_found")
    others = await call(http, "GET", f"{PATH}?limit=100", 200, headers=OTHER_AUTH)
    assert created["id"] not in {endpoint["id"] for endpoint in others["data"]}
    # Still there for its own tenant.
    await call(http, "GET", endpoint, 200)


@pytest.mark.parametrize("path", [MISSING, f"{PATH}/not-a-uuid", f"{MISSING}/deliveries"])
async def test_an_unknown_endpoint_is_not_found(http: aiohttp.ClientSession, path: str) -> None:
    assert_error(await call(http, "GET", path, 404), "not_found", "webhook_endpoint.not_found")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://hooks.example.com/x",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "http://user:secret@hooks.example.com/x",
        "http://user@hooks.example.com/x",
        "http:///no-host",
        "hooks.example.com/x",
        "http://hooks.example.com:99999/x",
        "http://hooks.example.com:port/x",
        "http://hooks.example.com/with space",
        "http://höoks.example.com/x",
        "http://hooks.example.com/\x00",
        "http://[::1/x",
        "https://hooks.example.com/" + "a" * 2048,
    ],
)
async def test_a_url_that_is_no_http_url_without_credentials_is_a_422_naming_it(
    http: aiohttp.ClientSession, url: str
) -> None:
    answer = await call(http, "POST", PATH, 422, json=body(url))
    assert_error(answer, "unprocessable_entity", "webhook_endpoint.invalid")
    assert attributes(answer) == ["webhook_endpoint.url"]


@pytest.mark.parametrize(
    ("events", "attribute"),
    [
        ([], "webhook_endpoint.webhook_events"),
        (["batch.exploded"], "webhook_endpoint.webhook_events[0]"),
        (["batch.completed", "BATCH.CANCELED"], "webhook_endpoint.webhook_events[1]"),
        (["batch.completed", "batch.completed"], "webhook_endpoint.webhook_events[1]"),
        ("batch.completed", "webhook_endpoint.webhook_events"),
        ([1], "webhook_endpoint.webhook_events"),
        # Longer than the known types: refused whole, however long (a quadratic check of
        # 500,000 entries used to hold the service's event loop for hours).
        (
            ["batch.completed", "batch.canceled", "batch.completed"],
            "webhook_endpoint.webhook_events",
        ),
        (["batch.completed"] * 500_000, "webhook_endpoint.webhook_events"),
    ],
    ids=lambda value: f"{len(value)} entries" if isinstance(value, list) else None,
)
async def test_bad_event_types_are_a_422_naming_them(
    http: aiohttp.ClientSession, events: Any, attribute: str
) -> None:
    answer = await call(http, "POST", PATH, 422, json=body(events=events))
    assert_error(answer, "unprocessable_entity", "webhook_endpoint.invalid")
    assert attributes(answer) == [attribute]


async def test_a_url_of_the_wrong_type_is_a_422(http: aiohttp.ClientSession) -> None:
    answer = await call(http, "POST", PATH, 422, json=body(url=["https://x.example"]))
    assert attributes(answer) == ["webhook_endpoint.url"]


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[]",
        b'{"url": "https://x.example"}',
        b'{"webhook_endpoint": "https://x.example"}',
        b'{"webhook_endpoint": {"url": "https://x.example", "secret": "mine"}}',
        b'{"webhook_endpoint": {"url": "https://x.example/\\ud800", "webhook_events": []}}',
    ],
)
async def test_a_malformed_body_is_a_400(http: aiohttp.ClientSession, raw: bytes) -> None:
    answer = await call(
        http, "POST", PATH, 400, data=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(answer, "bad_request")


async def test_a_tenant_has_at_most_16_endpoints(http: aiohttp.ClientSession) -> None:
    for _ in range(16):
        await call(http, "POST", PATH, 200, json=body(), headers=FULL_AUTH)
    refused = await call(http, "POST", PATH, 422, json=body(), headers=FULL_AUTH)
    assert_error(refused, "unprocessable_entity", "webhook_endpoint.limit_reached")
    listed = await call(http, "GET", f"{PATH}?limit=5&page=2", 200, headers=FULL_AUTH)
    assert listed["pagination"] == {"count": 16, "limit": 5, "page": 2, "url": PATH}
    assert len(listed["data"]) == 5


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "sort=position:asc", "page=0"])
async def test_bad_list_parameters_are_refused(http: aiohttp.ClientSession, query: str) -> None:
    answer = await call(http, "GET", f"{PATH}?{query}", 422)
    assert_error(answer, "unprocessable_entity")


async def test_over_grpc_an_endpoint_is_created_listed_and_read_without_its_secret(
    stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    endpoint = batch_pb2.WebhookEndpoint(
        url="https://hooks.example.com/grpc", webhook_events=["batch.completed"]
    )
    created = await stub.CreateWebhookEndpoint(
        batch_pb2.CreateWebhookEndpointRequest(webhook_endpoint=endpoint), metadata=bearer()
    )
    assert created.webhook_endpoint.signing_secret.startswith("whsec_")
    read = await stub.GetWebhookEndpoint(
        batch_pb2.GetWebhookEndpointRequest(id=created.webhook_endpoint.id), metadata=bearer()
    )
    assert read.webhook_endpoint.signing_secret == ""
    assert read.webhook_endpoint.url == endpoint.url
    assert list(read.webhook_endpoint.webhook_events) == ["batch.completed"]
    listed = await stub.ListWebhookEndpoints(
        batch_pb2.ListWebhookEndpointsRequest(page_size=100), metadata=bearer()
    )
    assert read.webhook_endpoint in listed.webhook_endpoints


async def test_over_grpc_bad_input_is_invalid_argument_naming_each_field(
    stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    endpoint = batch_pb2.WebhookEndpoint(url="gopher://x", webhook_events=["x", "batch.completed"])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateWebhookEndpoint(
            batch_pb2.CreateWebhookEndpointRequest(webhook_endpoint=endpoint), metadata=bearer()
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(raised.value) == (
        "webhook_endpoint.invalid",
        [
            ("webhook_endpoint.url", "webhook_endpoint.url.invalid"),
            ("webhook_endpoint.webhook_events[0]", "webhook_endpoint.webhook_events.invalid"),
        ],
    )
