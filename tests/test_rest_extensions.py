"""Beyond the contract, over REST: cancel, batch events (SSE), Idempotency-Key,
execution options, the create rate limit, and bodies protobuf cannot carry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from batchd.v1 import batch_pb2
from batchd.vocabulary import BATCH_STATUS_NAMES, OPERATION_STATUS_NAMES
from tests.processes import (
    free_port,
    gateway_env,
    service_env,
    start_gateway,
    start_service,
)
from tests.rest import (
    AUTH,
    OTHER_AUTH,
    assert_batch,
    assert_error,
    assert_list,
    assert_operation,
    attributes,
    call,
    create_batch,
    wait_completed,
)
from tests.upstream import UpstreamLog, huge_operations, running_upstream

Upstream = tuple[str, UpstreamLog]
UNKNOWN_ID = "4c1ec4d4-4b0f-4f4e-9a8e-000000000000"


def get(path: str) -> dict[str, str]:
    return {"http_method": "GET", "path": path}


async def create_with_options(
    http: aiohttp.ClientSession, operations: list[dict[str, Any]], **options: Any
) -> dict[str, Any]:
    document = {"batch": {"batch_operations": operations, "execution_options": options}}
    batch: dict[str, Any] = await call(http, "POST", "/v1/batches", 200, json=document)
    return batch


# --- the canceled status ----------------------------------------------------------------


def test_every_status_the_service_knows_has_a_rest_name() -> None:
    for enum in batch_pb2.BatchStatus.values():
        assert enum == batch_pb2.BATCH_STATUS_UNSPECIFIED or enum in BATCH_STATUS_NAMES
    for enum in batch_pb2.BatchOperationStatus.values():
        assert (
            enum == batch_pb2.BATCH_OPERATION_STATUS_UNSPECIFIED or enum in OPERATION_STATUS_NAMES
        )


# --- cancel -------------------------------------------------------------------------------


async def test_cancel_never_sends_pending_operations_and_ends_the_batch_canceled(
    http: aiohttp.ClientSession, upstream_server: Upstream
) -> None:
    log = upstream_server[1]
    created = await create_with_options(
        http, [get(f"/slow/0.2/{i}") for i in range(40)], max_concurrency=2
    )
    while not log.requests:
        await asyncio.sleep(0.01)
    answer = await call(http, "POST", f"/v1/batches/{created['id']}/cancel", 200)
    assert_batch(answer, extended=True)
    assert answer["id"] == created["id"]
    assert answer["status"] in {"in_progress", "canceled"}

    batch = await wait_completed(http, created["id"], status="canceled")
    assert_batch(batch, expanded=True, extended=True)
    operations = batch["batch_operations"]["data"]
    statuses = [op["status"] for op in operations]
    assert set(statuses) <= {"completed", "canceled"} and statuses.count("canceled") >= 30
    assert batch["finished_batch_operations_count"] == 40
    sent = log.by_idempotency_key()
    for op in operations:
        assert (op["id"] in sent) == (op["status"] == "completed"), op

    again = await call(http, "POST", f"/v1/batches/{created['id']}/cancel", 422)
    assert_error(again, "unprocessable_entity", "batch.not_cancelable")

    # The new status works in both list filters and in expand.
    listed = await call(http, "GET", f"/v1/batches?status[]=canceled&ids[]={batch['id']}", 200)
    assert_list(listed, "/v1/batches")
    assert [b["id"] for b in listed["data"]] == [batch["id"]]
    query = f"batch_ids[]={batch['id']}&status[]=canceled&limit=100&expand[]=batch"
    canceled = await call(http, "GET", f"/v1/batch_operations?{query}", 200)
    assert canceled["pagination"]["count"] == statuses.count("canceled")
    for op in canceled["data"]:
        assert_operation(op, expanded=True, extended=True)
        assert op["status"] == "canceled" and op["batch"]["status"] == "canceled"
        assert op["response_status"] is None and op["response_body"] is None


async def test_cancel_of_an_unknown_or_foreign_batch_is_not_found(
    api: aiohttp.ClientSession, other_auth: dict[str, str]
) -> None:
    created = await create_batch(api, [get("/slow/0.1/x")])
    for batch_id, headers in ((UNKNOWN_ID, {}), ("not-a-uuid", {}), (created["id"], other_auth)):
        body = await call(api, "POST", f"/v1/batches/{batch_id}/cancel", 404, headers=headers)
        assert_error(body, "not_found", "batch.not_found")
    body = await call(
        api, "POST", f"/v1/batches/{created['id']}/cancel", 401, headers={"Authorization": ""}
    )
    assert_error(body, "unauthorized")


# --- batch events (SSE) --------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    id: str
    name: str
    data: Any


@dataclass(frozen=True)
class Stack:
    base_url: str
    metrics_url: str
    keep_alive_url: str


@asynccontextmanager
async def stack(
    directory: Path, service_overrides: dict[str, str], gateway_overrides: dict[str, str]
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A service with `service_overrides` and a gateway with `gateway_overrides`."""
    async with running_upstream() as (upstream_url, _):
        env = service_env(
            f"sqlite+aiosqlite:///{directory / 'batchd.db'}", upstream_url, **service_overrides
        )
        service = await start_service(env, directory / "service.log")
        gateway, base_url = await start_gateway(
            gateway_env(env["BATCH_GRPC_ADDRESS"], **gateway_overrides), directory / "gateway.log"
        )
        yield base_url, env
        await gateway.stop()
        await service.stop()


@pytest.fixture(scope="module")
async def metered(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A service that exports its metrics, a gateway in front of it, and a second gateway
    that pings every 0.05 s of silence."""
    directory = tmp_path_factory.mktemp("metered")
    metrics_address = f"127.0.0.1:{free_port()}"
    overrides = {"BATCH_METRICS_ADDRESS": metrics_address, "BATCH_SHUTDOWN_GRACE": "1"}
    async with stack(directory, overrides, {}) as (base_url, env):
        pinging, keep_alive_url = await start_gateway(
            gateway_env(env["BATCH_GRPC_ADDRESS"], BATCH_SSE_KEEP_ALIVE="0.05"),
            directory / "pinging-gateway.log",
        )
        yield Stack(base_url, f"http://{metrics_address}/metrics", keep_alive_url)
        await pinging.stop()


@pytest.fixture
async def watcher(metered: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=metered.base_url, headers=AUTH) as session:
        yield session


def parse_events(text: str) -> tuple[list[Event], int]:
    """The events of an SSE stream, and how many comment lines it held; a stream starts
    with its `retry:` and nothing else."""
    assert text.startswith("retry: 2000\n\n"), text[:100]
    events, comments = [], 0
    for block in text.removeprefix("retry: 2000\n\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                comments += 1
                continue
            name, _, value = line.partition(": ")
            assert name not in fields, block
            fields[name] = value
        if fields:
            assert set(fields) == {"id", "event", "data"}, block
            events.append(Event(fields["id"], fields["event"], json.loads(fields["data"])))
    return events, comments


async def read_stream(
    http: aiohttp.ClientSession, batch_id: str, last_event_id: str | None = None
) -> tuple[list[Event], int]:
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    async with http.get(f"/v1/batches/{batch_id}/events", headers=headers) as response:
        text = await response.text()
        assert response.status == 200, text
        assert response.content_type == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
    return parse_events(text)


def operation_ids(events: list[Event]) -> list[str]:
    return [e.data["batch_operation"]["id"] for e in events if e.name == "batch_operation"]


async def first_operation_events(
    http: aiohttp.ClientSession, batch_id: str, wanted: int
) -> list[Event]:
    """The stream's events up to its `wanted`th operation event; then it disconnects."""
    async with http.get(f"/v1/batches/{batch_id}/events") as response:
        assert response.status == 200
        text = await response.content.readuntil(b"\n\n")  # retry:
        while text.count(b"event: batch_operation\n") < wanted:
            text += await response.content.readuntil(b"\n\n")
    events, _ = parse_events(text.decode())
    return events


async def watch_streams(metrics_url: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as response:
        text = await response.text()
    [value] = [
        line.split()[1] for line in text.splitlines() if line.startswith("batchd_watch_streams ")
    ]
    return float(value)


async def wait_watch_streams(metrics_url: str, expected: float, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (seen := await watch_streams(metrics_url)) != expected:
        assert loop.time() < deadline, f"batchd_watch_streams stayed {seen}, not {expected}"
        await asyncio.sleep(0.05)


async def test_events_stream_the_batch_then_each_operation_once_until_it_completes(
    watcher: aiohttp.ClientSession,
) -> None:
    created = await create_batch(watcher, [get(f"/slow/0.05/{i}") for i in range(6)])
    events, _ = await read_stream(watcher, created["id"])

    assert events[0].name == "batch"
    assert_batch(events[0].data)
    assert events[0].data["id"] == created["id"]
    end = events.pop()
    assert end.name == "end"
    assert end.data == events[-1].data
    finished = []
    for event in events:
        assert event.name in {"batch", "batch_operation"}, event
        if event.name == "batch_operation":
            assert set(event.data) == {"batch", "batch_operation"}
            assert_batch(event.data["batch"])
            assert_operation(event.data["batch_operation"])
            assert event.data["batch_operation"]["batch"] == created["id"]
            assert event.data["batch_operation"]["status"] == "completed"
            finished.append(event.data["batch_operation"]["id"])
        else:
            assert_batch(event.data)
    batch = await wait_completed(watcher, created["id"])
    assert sorted(finished) == sorted(op["id"] for op in batch["batch_operations"]["data"])
    assert events[-1].name == "batch"
    assert events[-1].data["status"] == "completed"
    assert events[-1].data["finished_batch_operations_count"] == 6
    # Each id says where the stream stood: its last operation, and the batch's status.
    assert events[0].id == f"{created['id']}/{events[0].data['status']}"
    for event in events[1:]:
        if event.name == "batch_operation":
            operation = event.data["batch_operation"]["id"]
            assert event.id == f"{operation}/{event.data['batch']['status']}"
    assert events[-1].id == end.id == f"{finished[-1]}/completed"


async def test_a_reconnect_with_last_event_id_resumes_after_that_event(
    watcher: aiohttp.ClientSession,
) -> None:
    created = await create_with_options(
        watcher, [get(f"/slow/0.1/{i}") for i in range(12)], sequential=True
    )
    before = await first_operation_events(watcher, created["id"], 3)
    assert len(operation_ids(before)) == 3
    after, _ = await read_stream(watcher, created["id"], last_event_id=before[-1].id)
    # No new snapshot: the batch is still in the state the client saw, so the stream
    # goes on with the next operation.
    assert after[0].name == "batch_operation", after[0]
    assert after[-1].name == "end"
    assert after[-2].name == "batch" and after[-2].data["status"] == "completed"
    resumed = operation_ids(after)
    assert not set(resumed) & set(operation_ids(before))
    batch = await wait_completed(watcher, created["id"])
    everyone = [op["id"] for op in batch["batch_operations"]["data"]]
    assert operation_ids(before) + resumed == everyone  # sequential: in submitted order


async def test_a_reconnect_after_the_batch_finished_gets_what_it_missed_then_no_content(
    watcher: aiohttp.ClientSession,
) -> None:
    created = await create_with_options(
        watcher, [get(f"/slow/0.05/{i}") for i in range(6)], sequential=True
    )
    before = await first_operation_events(watcher, created["id"], 2)
    await wait_completed(watcher, created["id"])
    after, _ = await read_stream(watcher, created["id"], last_event_id=before[-1].id)
    # The status changed meanwhile: the batch as it is now comes first.
    assert after[0].name == "batch" and after[0].data["status"] == "completed"
    assert [e.name for e in after[1:]] == ["batch_operation"] * 4 + ["end"]
    assert len(set(operation_ids(before) + operation_ids(after))) == 6
    # Everything delivered: a reconnect is told there is nothing more (EventSource stops).
    headers = {"Last-Event-ID": after[-1].id}
    async with watcher.get(f"/v1/batches/{created['id']}/events", headers=headers) as response:
        assert response.status == 204
        assert await response.read() == b""
    # From the batch's own id (no operation seen yet): every operation, once.
    everything, _ = await read_stream(watcher, created["id"], f"{created['id']}/in_progress")
    assert len(set(operation_ids(everything))) == len(operation_ids(everything)) == 6


@pytest.mark.parametrize(
    "last_event_id",
    ["1", "garbage", f"{UNKNOWN_ID}/in_progress", "{batch}/finished", "{batch}", "{BATCH}/pending"],
)
async def test_a_last_event_id_no_stream_sent_is_a_400(
    watcher: aiohttp.ClientSession, last_event_id: str
) -> None:
    created = await create_batch(watcher, [get("/echo/x")])
    header = last_event_id.format(batch=created["id"], BATCH=created["id"].upper())
    body = await call(
        watcher,
        "GET",
        f"/v1/batches/{created['id']}/events",
        400,
        headers={"Last-Event-ID": header},
    )
    assert_error(body, "bad_request", "bad_request")
    assert "Last-Event-ID" in body["message"]


async def test_events_of_a_canceled_batch_end_with_its_canceled_state(
    watcher: aiohttp.ClientSession,
) -> None:
    created = await create_with_options(
        watcher, [get(f"/slow/0.1/{i}") for i in range(30)], sequential=True
    )
    async with watcher.get(f"/v1/batches/{created['id']}/events") as response:
        assert response.status == 200
        text = await response.content.readuntil(b"\n\n")  # retry:
        text += await response.content.readuntil(b"\n\n")  # the batch
        await call(watcher, "POST", f"/v1/batches/{created['id']}/cancel", 200)
        events, _ = parse_events((text + await response.read()).decode())
    assert events[-1].name == "end"
    assert events[-2].name == "batch"
    assert_batch(events[-2].data, extended=True)
    assert events[-2].data["status"] == "canceled"


async def test_events_ping_during_silence(metered: Stack) -> None:
    async with aiohttp.ClientSession(base_url=metered.keep_alive_url, headers=AUTH) as http:
        # Silent for at least 1.5 s, thirty times the gateway's ping interval.
        created = await create_batch(http, [get("/slow/1.5/quiet")])
        events, comments = await read_stream(http, created["id"])
    assert comments >= 1
    assert events[-1].data["status"] == "completed"


async def test_a_client_that_disconnects_closes_its_watch(
    metered: Stack, watcher: aiohttp.ClientSession
) -> None:
    await wait_watch_streams(metered.metrics_url, 0)
    # Silent for far longer than the test: only the disconnect can end these streams.
    created = await create_batch(watcher, [get("/slow/60/long")])
    responses = [await watcher.get(f"/v1/batches/{created['id']}/events") for _ in range(2)]
    for response in responses:
        assert response.status == 200
        assert await response.content.readuntil(b"\n\n") == b"retry: 2000\n\n"
        first = await response.content.readuntil(b"\n\n")
        assert b"event: batch\n" in first
    await wait_watch_streams(metered.metrics_url, 2)
    for response in responses:
        response.close()
    await wait_watch_streams(metered.metrics_url, 0)
    await call(watcher, "POST", f"/v1/batches/{created['id']}/cancel", 200)


async def test_events_of_an_unknown_batch_or_without_a_token_are_json_errors(
    watcher: aiohttp.ClientSession,
) -> None:
    body = await call(watcher, "GET", f"/v1/batches/{UNKNOWN_ID}/events", 404)
    assert_error(body, "not_found", "batch.not_found")
    created = await create_batch(watcher, [get("/echo/x")])
    body = await call(
        watcher, "GET", f"/v1/batches/{created['id']}/events", 401, headers={"Authorization": ""}
    )
    assert_error(body, "unauthorized")
    body = await call(
        watcher, "GET", f"/v1/batches/{created['id']}/events", 404, headers=OTHER_AUTH
    )
    assert_error(body, "not_found", "batch.not_found")


# --- Idempotency-Key -----------------------------------------------------------------------


async def test_a_repeated_idempotency_key_returns_the_first_batch(
    http: aiohttp.ClientSession, upstream_server: Upstream
) -> None:
    operations = [{"http_method": "POST", "path": "/echo/orders", "body": {"n": 1}}]
    key = {"Idempotency-Key": "order-1"}
    first = await create_batch(http, operations, headers=key)
    again = await create_batch(http, operations, headers=key)
    assert_batch(again)
    assert again["id"] == first["id"]
    other_tenant = await create_batch(http, operations, headers={**key, **OTHER_AUTH})
    assert other_tenant["id"] != first["id"]

    changed = {"batch": {"batch_operations": [{**operations[0], "body": {"n": 2}}]}}
    body = await call(http, "POST", "/v1/batches", 422, json=changed, headers=key)
    assert_error(body, "unprocessable_entity", "batch.idempotency_key.reused")

    await wait_completed(http, first["id"])
    await wait_completed(http, other_tenant["id"], headers=OTHER_AUTH)
    # One execution per tenant's batch; the repeat executed nothing.
    assert [r.body for r in upstream_server[1].requests] == [{"n": 1}, {"n": 1}]


async def test_bad_idempotency_keys(api: aiohttp.ClientSession) -> None:
    document = {"batch": {"batch_operations": [get("/echo/x")]}}
    long_key = {"Idempotency-Key": "k" * 201}
    body = await call(api, "POST", "/v1/batches", 422, json=document, headers=long_key)
    assert_error(body, "unprocessable_entity")
    assert attributes(body) == ["request_id"]
    for key in ("", "caf\u00e9"):
        headers = {"Idempotency-Key": key}
        body = await call(api, "POST", "/v1/batches", 400, json=document, headers=headers)
        assert_error(body, "bad_request")


# --- execution options ---------------------------------------------------------------------


async def test_sequential_stop_on_failure_cancels_what_follows_a_failure(
    http: aiohttp.ClientSession, upstream_server: Upstream
) -> None:
    paths = ["/slow/0.02/a", "/slow/0.02/b", "/status/500", "/slow/0.02/c", "/slow/0.02/d"]
    created = await create_with_options(
        http, [get(path) for path in paths], sequential=True, stop_on_failure=True
    )
    batch = await wait_completed(http, created["id"])
    assert_batch(batch, expanded=True, extended=True)
    statuses = [op["status"] for op in batch["batch_operations"]["data"]]
    assert statuses == ["completed"] * 3 + ["canceled"] * 2
    assert [r.path for r in upstream_server[1].requests] == paths[:3]
    assert upstream_server[1].max_in_flight == 1


@pytest.mark.parametrize(
    "options",
    [
        [],
        "sequential",
        {"sequential": "yes"},
        {"stop_on_failure": 1},
        {"max_concurrency": True},
        {"max_concurrency": 1.5},
        {"max_concurrency": "2"},
        {"parallel": True},
    ],
)
async def test_execution_options_of_the_wrong_form_are_bad_requests(
    api: aiohttp.ClientSession, options: Any
) -> None:
    document = {"batch": {"batch_operations": [get("/echo/x")], "execution_options": options}}
    body = await call(api, "POST", "/v1/batches", 400, json=document)
    assert_error(body, "bad_request")


@pytest.mark.parametrize("concurrency", [-1, 2**31, -(2**40)])
async def test_max_concurrency_out_of_range_is_unprocessable(
    api: aiohttp.ClientSession, concurrency: int
) -> None:
    document = {
        "batch": {
            "batch_operations": [get("/echo/x")],
            "execution_options": {"max_concurrency": concurrency},
        }
    }
    body = await call(api, "POST", "/v1/batches", 422, json=document)
    assert_error(body, "unprocessable_entity")
    assert attributes(body) == ["execution_options.max_concurrency"]
    assert body["validation_errors"][0]["code"] == "batch.execution_options.max_concurrency.invalid"


async def test_null_execution_options_are_the_defaults(api: aiohttp.ClientSession) -> None:
    created = await create_with_options(
        api, [get("/echo/x")], sequential=None, stop_on_failure=False, max_concurrency=0
    )
    assert_batch(created)


# --- rate limit ----------------------------------------------------------------------------


async def test_the_create_rate_limit_is_a_429_with_retry_after(tmp_path: Path) -> None:
    limited = {"BATCH_CREATE_RATE": "0.01", "BATCH_CREATE_BURST": "1"}
    async with (
        stack(tmp_path, limited, {}) as (base_url, _),
        aiohttp.ClientSession(base_url=base_url, headers=AUTH) as http,
    ):
        await create_batch(http, [get("/echo/x")])
        document = {"batch": {"batch_operations": [get("/echo/x")]}}
        async with http.post("/v1/batches", json=document) as response:
            assert response.status == 429
            body = await response.json()
            retry_after = response.headers["Retry-After"]
    assert_error(body, "too_many_requests", "batch.rate_limited")
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 100


# --- strings protobuf cannot carry -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "attribute"),
    [
        (r'{"x": "\ud800"}', "batch_operations[0].body"),
        (r'{"\udfff": 1}', "batch_operations[0].body"),
        (r'{"x": ["ok", {"y": "a\ud800b"}]}', "batch_operations[0].body"),
    ],
)
async def test_a_lone_surrogate_in_the_body_is_a_bad_request(
    api: aiohttp.ClientSession, text: str, attribute: str
) -> None:
    raw = (
        '{"batch": {"batch_operations": [{"http_method": "GET", "path": "/a", "body": '
        + text
        + "}]}}"
    )
    headers = {"Content-Type": "application/json"}
    body = await call(api, "POST", "/v1/batches", 400, data=raw.encode(), headers=headers)
    assert_error(body, "bad_request")
    assert attributes(body) == [attribute]


async def test_a_lone_surrogate_in_the_path_or_query_is_a_bad_request(
    api: aiohttp.ClientSession,
) -> None:
    for operation, attribute in (
        (r'{"http_method": "GET", "path": "/a\ud800"}', "batch_operations[0].path"),
        (
            r'{"http_method": "GET", "path": "/a", "query_params": {"q": "\udc00"}}',
            "batch_operations[0].query_params",
        ),
    ):
        raw = '{"batch": {"batch_operations": [' + operation + "]}}"
        body = await call(api, "POST", "/v1/batches", 400, data=raw.encode())
        assert_error(body, "bad_request")
        assert attributes(body) == [attribute]
    # A surrogate pair is one valid character.
    operation = r'{"http_method": "GET", "path": "/a", "body": {"x": "\ud83d\ude00"}}'
    raw = '{"batch": {"batch_operations": [' + operation + "]}}"
    created = await call(
        api, "POST", "/v1/batches?expand[]=batch_operations", 200, data=raw.encode()
    )
    assert created["batch_operations"]["data"][0]["body"] == {"x": "\U0001f600"}


async def test_a_batch_too_large_to_inline_shows_what_fits_and_counts_the_rest(
    api: aiohttp.ClientSession,
) -> None:
    # Twelve stored responses of about 0.9 MiB: more than one reply may carry.
    count = 12
    created = await create_batch(api, huge_operations(count))
    # Not expanded while waiting: each expanded read would carry megabytes.
    await wait_completed(api, created["id"], timeout=60, expand=False)

    path = f"/v1/batches/{created['id']}?expand[]=batch_operations"
    inlined = (await call(api, "GET", path, 200))["batch_operations"]
    shown = len(inlined["data"])
    assert 0 < shown < count
    assert inlined["pagination"] == {
        "count": count,
        "limit": shown,
        "page": 1,
        "url": "/v1/batch_operations",
    }
    listed = await call(
        api, "GET", f"/v1/batch_operations?batch_ids[]={created['id']}&limit=100", 200
    )
    assert listed["pagination"]["count"] == count
    assert {op["id"] for op in inlined["data"]} < {op["id"] for op in listed["data"]}
    # The first operations, in submitted order, each whole.
    assert [op["query_params"]["n"] for op in inlined["data"]] == list(range(shown))
    assert all(len(op["response_body"]["data"]) == 900_000 for op in inlined["data"])


async def test_a_page_too_large_for_one_reply_is_a_422_naming_the_limit(
    api: aiohttp.ClientSession,
) -> None:
    # Twenty stored responses of about 0.9 MiB: more than one reply carries (16 MiB).
    created = await create_batch(api, huge_operations(20))
    await wait_completed(api, created["id"], timeout=60, expand=False)
    path = f"/v1/batch_operations?batch_ids[]={created['id']}"
    body = await call(api, "GET", f"{path}&limit=20", 422)
    assert_error(body, "unprocessable_entity")
    assert attributes(body) == ["limit"]
    assert body["validation_errors"][0]["code"] == "list.limit.too_large"
    fewer = await call(api, "GET", f"{path}&limit=10", 200)
    assert len(fewer["data"]) == 10
