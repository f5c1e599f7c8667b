"""What operators rely on at the gateway: request ids, JSON logs, metrics, the OpenAPI
document, and a graceful stop."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_spec_validator import validate

from batchd.messages import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from gateway.app import create_app
from gateway.console import is_console_path
from gateway.openapi import DOCUMENT_PATH
from gateway.settings import GatewaySettings
from tests.processes import (
    TOKEN,
    Process,
    batchd_env,
    gateway_env,
    service_env,
    start_batchd,
    start_gateway,
    start_service,
)
from tests.rest import AUTH, assert_error, call, create_batch, wait_completed
from tests.upstream import UpstreamLog, running_upstream

GENERATED_ID = re.compile(r"[0-9a-f]{32}")
MISSING_BATCH = "/v1/batches/00000000-0000-4000-8000-000000000000"


@dataclass
class Stack:
    gateway: Process
    base_url: str
    service: Process
    grpc_target: str
    upstream: UpstreamLog


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A service and gateway that log at INFO, shared by this module's tests."""
    directory = tmp_path_factory.mktemp("operability")
    async with running_upstream() as (upstream_url, upstream_log):
        env = service_env(
            f"sqlite+aiosqlite:///{directory / 'batchd.db'}", upstream_url, BATCH_LOG_LEVEL="INFO"
        )
        service = await start_service(env, directory / "service.log")
        gateway, base_url = await start_gateway(
            gateway_env(env["BATCH_GRPC_ADDRESS"], BATCH_LOG_LEVEL="INFO"),
            directory / "gateway.log",
        )
        yield Stack(gateway, base_url, service, env["BATCH_GRPC_ADDRESS"], upstream_log)
        await gateway.stop()
        await service.stop()


def json_events(process: Process) -> list[dict[str, Any]]:
    return [json.loads(line) for line in process.log().splitlines() if line.startswith("{")]


async def logged_rpcs(process: Process, rpc: str) -> list[dict[str, Any]]:
    """The service's log events of an RPC, waiting a moment for a stream's to be written."""
    for _ in range(100):
        events = [e for e in json_events(process) if e.get("rpc") == rpc]
        if events:
            return events
        await asyncio.sleep(0.05)
    return []


def http_events(process: Process, request_id: str) -> list[dict[str, Any]]:
    return [
        event
        for event in json_events(process)
        if event["logger"] == "batchd.http" and event["request_id"] == request_id
    ]


async def test_a_callers_request_id_reaches_the_upstream_the_logs_and_the_answer(
    stack: Stack,
) -> None:
    headers = {**AUTH, "X-Request-Id": "order-7-attempt-1"}
    async with aiohttp.ClientSession(base_url=stack.base_url, headers=headers) as http:
        async with http.post(
            "/v1/batches",
            json={"batch": {"batch_operations": [{"http_method": "GET", "path": "/echo/rid"}]}},
        ) as response:
            assert response.status == 200, await response.text()
            assert response.headers["X-Request-Id"] == "order-7-attempt-1"
            created = await response.json()
        await wait_completed(http, created["id"])
        async with http.get(f"/v1/batches/{created['id']}/events") as events:
            assert events.status == 200
            await events.read()
    [seen] = [r for r in stack.upstream.requests if r.path == "/echo/rid"]
    assert seen.headers["X-Request-Id"] == "order-7-attempt-1"
    [create_event] = [
        e for e in http_events(stack.gateway, "order-7-attempt-1") if e["method"] == "POST"
    ]
    assert create_event["route"] == "/v1/batches"
    assert create_event["status"] == 200
    assert create_event["level"] == "INFO"
    assert isinstance(create_event["duration_ms"], float) and create_event["duration_ms"] >= 0
    rpc_events = [e for e in json_events(stack.service) if e.get("rpc") == "CreateBatch"]
    assert "order-7-attempt-1" in {e["request_id"] for e in rpc_events}
    watches = await logged_rpcs(stack.service, "WatchBatch")
    assert {e["request_id"] for e in watches} == {"order-7-attempt-1"}
    assert TOKEN not in stack.gateway.log()
    assert "Authorization" not in stack.gateway.log()


@pytest.mark.parametrize(
    ("sent", "kept"),
    [(None, False), ("", False), ("has space", False), ("x" * 129, False), ("x" * 128, True)],
)
async def test_errors_carry_a_request_id_made_when_the_callers_is_missing_or_unusable(
    stack: Stack, sent: str | None, kept: bool
) -> None:
    headers = {} if sent is None else {"X-Request-Id": sent}
    async with (
        aiohttp.ClientSession(base_url=stack.base_url) as http,
        http.get(MISSING_BATCH, headers=headers) as response,
    ):
        assert response.status == 401
        assert_error(await response.json(), "unauthorized")
        request_id = response.headers["X-Request-Id"]
    if kept:
        assert request_id == sent
    else:
        assert GENERATED_ID.fullmatch(request_id), request_id
    [event] = http_events(stack.gateway, request_id)
    assert (event["method"], event["route"], event["status"]) == (
        "GET",
        "/v1/batches/{id}",
        401,
    )


async def test_unknown_routes_and_methods_are_answered_with_a_request_id(stack: Stack) -> None:
    async with aiohttp.ClientSession(base_url=stack.base_url, headers=AUTH) as http:
        async with http.get("/v2/nothing/here") as missing:
            assert missing.status == 404
            [event] = http_events(stack.gateway, missing.headers["X-Request-Id"])
            assert event["route"] == "unmatched"
        async with http.delete("/v1/batches") as wrong_method:
            assert wrong_method.status == 405
            assert GENERATED_ID.fullmatch(wrong_method.headers["X-Request-Id"])


async def test_metrics_count_requests_by_route_pattern_without_a_token(stack: Stack) -> None:
    async with aiohttp.ClientSession(base_url=stack.base_url, headers=AUTH) as http:
        for _ in range(3):
            await call(http, "GET", MISSING_BATCH, 404)
    async with (
        aiohttp.ClientSession(base_url=stack.base_url) as anonymous,
        anonymous.get("/metrics") as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/plain"
        exposition = await response.text()
    counted = re.search(
        r'^batchd_http_requests_total\{method="GET",route="/v1/batches/\{id\}",status="404"\} '
        r"(\d+)\.0$",
        exposition,
        re.MULTILINE,
    )
    assert counted is not None, exposition
    assert int(counted.group(1)) >= 3
    assert "batchd_http_request_duration_seconds_bucket{" in exposition
    assert "00000000-0000-4000-8000-000000000000" not in exposition


async def test_openapi_document_is_served_without_a_token(stack: Stack) -> None:
    async with aiohttp.ClientSession(base_url=stack.base_url) as anonymous:
        served = await call(anonymous, "GET", "/openapi.json", 200)
    assert served == json.loads(DOCUMENT_PATH.read_text())


def test_the_openapi_document_is_valid_openapi_3_1() -> None:
    document = json.loads(DOCUMENT_PATH.read_text())
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_openapi_document_states_the_page_sizes_the_service_uses() -> None:
    limit = json.loads(DOCUMENT_PATH.read_text())["components"]["parameters"]["Limit"]
    assert limit["schema"]["maximum"] == MAX_PAGE_SIZE
    assert limit["schema"]["default"] == DEFAULT_PAGE_SIZE


# Documented by gateway/openapi.json, served once the REST extensions are merged.
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def test_the_openapi_document_lists_exactly_the_api_routes_the_gateway_serves() -> None:
    """The console's pages and files are for browsers, not part of the API it documents."""
    document = json.loads(DOCUMENT_PATH.read_text())
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    app = create_app(GatewaySettings())
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and not is_console_path(route.resource.canonical)
    }
    assert served == documented


async def test_the_all_in_one_metrics_include_the_services(
    tmp_path: Path, upstream_server: tuple[str, UpstreamLog]
) -> None:
    env = batchd_env(tmp_path, BATCH_UPSTREAM_URL=upstream_server[0])
    process, base_url = await start_batchd(env, tmp_path)
    try:
        async with aiohttp.ClientSession(base_url=base_url, headers=AUTH) as http:
            created = await create_batch(http, [{"http_method": "GET", "path": "/echo/m"}])
            await wait_completed(http, created["id"])
        async with (
            aiohttp.ClientSession(base_url=base_url) as anonymous,
            anonymous.get("/metrics") as response,
        ):
            assert response.status == 200
            exposition = await response.text()
    finally:
        code = await process.stop()
    assert code == 0, process.log()
    assert 'batchd_rpc_requests_total{code="OK",method="CreateBatch"}' in exposition
    assert 'batchd_operations_executed_total{status="completed"}' in exposition
    assert 'batchd_http_requests_total{method="POST",route="/v1/batches",status="200"}' in (
        exposition
    )
    assert "batchd_operations_pending" in exposition
    assert "batchd_watch_streams" in exposition


async def test_healthz_fails_until_the_grpc_backend_answers(tmp_path: Path) -> None:
    """A gateway in front of a port nothing listens on is up, but not ready."""
    unreachable = gateway_env("127.0.0.1:1")
    gateway = Process("gateway", unreachable, tmp_path / "gateway.log")
    await gateway.start()
    base_url = f"http://{unreachable['BATCH_HTTP_ADDRESS']}"
    try:
        status = await _first_answer(base_url, "/healthz", gateway)
    finally:
        code = await gateway.stop()
    assert status == 503
    assert code == 0, gateway.log()


async def _first_answer(base_url: str, path: str, process: Process) -> int:
    """The status of the first answer of a starting server (bounded by the poll count)."""
    async with aiohttp.ClientSession(base_url=base_url) as http:
        for _ in range(400):
            assert process.process is not None and process.process.returncode is None
            try:
                async with http.get(path) as response:
                    return response.status
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise TimeoutError(process.log())


@asynccontextmanager
async def paused(process: Process) -> AsyncIterator[None]:
    """The process frozen (SIGSTOP): whatever the gateway asks of it waits."""
    assert process.process is not None
    process.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.process.send_signal(signal.SIGCONT)


async def start_get(base_url: str, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A GET the gateway has started to handle (the caller closes the writer)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "X-Request-Id: drained-1\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    # aiohttp answers 100 Continue from inside the request's handler: it is in flight.
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    return reader, writer


async def wait_refusing(base_url: str) -> None:
    """Waits until the gateway no longer accepts connections (bounded by the poll count)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    for _ in range(400):
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except ConnectionRefusedError:
            return
        writer.close()
        await asyncio.sleep(0.05)
    raise TimeoutError("the gateway still accepts connections")


async def test_sigterm_stops_accepting_drains_in_flight_requests_and_exits_0(
    stack: Stack, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession(base_url=stack.base_url, headers=AUTH) as http:
        created = await create_batch(http, [{"http_method": "GET", "path": "/echo/drain"}])
    gateway, base_url = await start_gateway(
        gateway_env(stack.grpc_target, BATCH_RPC_TIMEOUT="120"), tmp_path / "gateway.log"
    )
    assert gateway.process is not None
    async with paused(stack.service):
        reader, writer = await start_get(base_url, f"/v1/batches/{created['id']}")
        # The gateway waits on the frozen service while it is told to stop.
        gateway.process.send_signal(signal.SIGTERM)
        await wait_refusing(base_url)
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), response
    assert b"\r\nX-Request-Id: drained-1" in head
    assert json.loads(body)["id"] == created["id"]
    # Already told to stop: a second signal would exit at once.
    assert await asyncio.wait_for(gateway.process.wait(), 60) == 0, gateway.log()
    await gateway.stop()


async def test_a_second_signal_exits_at_once_without_waiting_for_the_drain(
    stack: Stack, tmp_path: Path
) -> None:
    gateway, base_url = await start_gateway(
        gateway_env(stack.grpc_target, BATCH_RPC_TIMEOUT="120"), tmp_path / "gateway.log"
    )
    assert gateway.process is not None
    async with paused(stack.service):
        reader, writer = await start_get(base_url, MISSING_BATCH)
        gateway.process.send_signal(signal.SIGTERM)
        await wait_refusing(base_url)
        assert await gateway.stop(signal.SIGTERM) == 1, gateway.log()
    assert await reader.read() == b""
    writer.close()
