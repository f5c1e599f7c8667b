"""Tracing end to end: real processes export to a real OTLP/HTTP receiver on loopback,
and one trace id runs from the REST request to the upstream's `traceparent` header."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.otlp_receiver import Received, ReceivedSpan, running_receiver
from tests.processes import (
    BATCHD,
    Process,
    batchd_env,
    gateway_env,
    service_env,
    start_batchd,
    start_gateway,
    start_service,
)
from tests.rest import AUTH, create_batch, wait_completed
from tests.upstream import SeenRequest, UpstreamLog

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
CREATE = "/batchd.v1.BatchService/CreateBatch"
OPERATIONS = [
    {"http_method": "PUT", "path": "/echo/items/1", "body": {"n": 1}},
    {"http_method": "POST", "path": "/echo/items", "query_params": {"secret": "s3"}},
]
# Every variable tracing reads, so that the machine's own cannot change a test.
TRACING_OFF = {
    "OTEL_SDK_DISABLED": "",
    "OTEL_TRACES_EXPORTER": "",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "",
    "OTEL_SERVICE_NAME": "",
}


def tracing_to(endpoint: str, **overrides: str) -> dict[str, str]:
    return {
        **TRACING_OFF,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_TRACES_SAMPLER_ARG": "",
        # Export within a tenth of a second, not the default five.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        **overrides,
    }


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, Received]]:
    async with running_receiver() as served:
        yield served


def trace_context(seen: SeenRequest) -> tuple[str, str]:
    """The trace id and parent span id of the one traceparent an upstream request carried."""
    [header] = seen.headers.getall("traceparent")
    match = TRACEPARENT.fullmatch(header)
    assert match is not None, header
    return match.group(1), match.group(2)


def ancestors(span: ReceivedSpan, spans: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    """The span's parents, nearest first, as far as they were exported."""
    chain = []
    while span.parent_span_id in spans:
        span = spans[span.parent_span_id]
        chain.append(span)
    return chain


async def test_one_trace_runs_from_the_rest_request_through_gateway_and_service_to_the_upstream(
    tmp_path: Path,
    upstream_server: tuple[str, UpstreamLog],
    receiver: tuple[str, Received],
) -> None:
    endpoint, received = receiver
    upstream_url, seen = upstream_server
    env = service_env(
        f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}", upstream_url, **tracing_to(endpoint)
    )
    service = await start_service(env, tmp_path / "service.log")
    gateway, base_url = await start_gateway(
        gateway_env(env["BATCH_GRPC_ADDRESS"], **tracing_to(endpoint)), tmp_path / "gateway.log"
    )
    try:
        async with aiohttp.ClientSession(base_url=base_url, headers=AUTH) as http:
            created = await create_batch(http, OPERATIONS)
            batch = await wait_completed(http, created["id"])
    finally:
        assert await gateway.stop() == 0, gateway.log()
        assert await service.stop() == 0, service.log()
    # Stopped, both processes have exported all they had.
    [rest] = received.named("POST /v1/batches", "batchd-gateway")
    assert (rest.kind, rest.parent_span_id) == ("server", "")
    [client] = [s for s in received.named(CREATE, "batchd-gateway") if s.kind == "client"]
    [server] = received.named(CREATE, "batchd-service")
    assert server.kind == "server"
    assert client.parent_span_id == rest.span_id
    assert server.parent_span_id == client.span_id
    assert {rest.trace_id, client.trace_id, server.trace_id} == {rest.trace_id}

    spans = received.by_id()
    operation_ids = {operation["id"] for operation in batch["batch_operations"]["data"]}
    assert len(seen.requests) == len(OPERATIONS)
    for request in seen.requests:
        trace_id, parent_id = trace_context(request)
        assert trace_id == rest.trace_id
        # The traceparent's parent is the engine's client span of that attempt, under
        # the operation's execution span, under the CreateBatch call that stored it.
        attempt = spans[parent_id]
        assert (attempt.service, attempt.kind, attempt.name) == (
            "batchd-service",
            "client",
            request.method,
        )
        # The span names the path; the query may hold a tenant's data.
        url = attempt.attributes.get("http.url") or attempt.attributes.get("url.full")
        assert url == f"{upstream_url}{request.path}", attempt.attributes
        execution, create, *_ = ancestors(attempt, spans)
        assert execution.name == "execute operation"
        assert execution.attributes["batchd.operation.id"] == request.headers["Idempotency-Key"]
        assert execution.attributes["batchd.batch.id"] == created["id"]
        assert create == server
    executed = {s.attributes["batchd.operation.id"] for s in received.named("execute operation")}
    assert executed == operation_ids
    with sqlite3.connect(tmp_path / "batchd.db") as database:
        [(stored,)] = database.execute("SELECT traceparent FROM batches").fetchall()
    assert TRACEPARENT.fullmatch(stored)
    assert stored.startswith(f"00-{server.trace_id}-{server.span_id}-")


async def test_a_callers_traceparent_continues_and_logs_carry_the_trace_id(
    tmp_path: Path,
    upstream_server: tuple[str, UpstreamLog],
    receiver: tuple[str, Received],
) -> None:
    endpoint, received = receiver
    upstream_url, seen = upstream_server
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    env = batchd_env(
        tmp_path,
        BATCH_UPSTREAM_URL=upstream_url,
        BATCH_LOG_LEVEL="INFO",
        **tracing_to(endpoint, OTEL_SERVICE_NAME="batchd-under-test"),
    )
    process, base_url = await start_batchd(env, tmp_path)
    try:
        async with aiohttp.ClientSession(base_url=base_url, headers=AUTH) as http:
            created = await create_batch(
                http,
                OPERATIONS[:1],
                headers={
                    "traceparent": f"00-{caller_trace}-{caller_span}-01",
                    "X-Request-Id": "caller-request-1",
                },
            )
            await wait_completed(http, created["id"])
            # The event stream runs through the traced channel too.
            async with http.get(f"/v1/batches/{created['id']}/events") as events:
                assert events.status == 200
                # The stream opens with its `retry:` advice, then the batch's first event.
                assert await events.content.readline() == b"retry: 2000\n"
                assert await events.content.readline() == b"\n"
                assert (await events.content.readline()).startswith(b"id: ")
    finally:
        assert await process.stop() == 0, process.log()
    [rest] = received.named("POST /v1/batches", "batchd-under-test")
    # The event stream's spans end too, though the gateway cancels its call.
    [events_span] = received.named("GET /v1/batches/{id}/events")
    [watch_client, watch_server] = sorted(
        received.named("/batchd.v1.BatchService/WatchBatch"), key=lambda span: span.kind
    )
    assert (watch_client.kind, watch_server.kind) == ("client", "server")
    assert watch_client.parent_span_id == events_span.span_id
    assert watch_server.parent_span_id == watch_client.span_id
    assert (rest.trace_id, rest.parent_span_id) == (caller_trace, caller_span)
    [request] = seen.requests
    assert trace_context(request)[0] == caller_trace
    [logged] = [
        event
        for event in map(json.loads, process.log().splitlines())
        if event.get("message") == "http request" and event.get("route") == "/v1/batches"
    ]
    assert logged["request_id"] == "caller-request-1"
    assert logged["trace_id"] == caller_trace


HOSTILE_TRACEPARENTS = [
    "garbage",
    "",
    # All-zero ids are invalid by the W3C spec.
    f"00-{'0' * 32}-00f067aa0ba902b7-01",
    f"00-4bf92f3577b34da6a3ce929d0e0e4736-{'0' * 16}-01",
    # Version ff is forbidden; uppercase hex is not the format.
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
    # Too long for version 00, and far too long for anything.
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + "a" * 7000,
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
]


async def test_hostile_traceparents_are_ignored_and_start_a_trace_of_their_own(
    tmp_path: Path,
    upstream_server: tuple[str, UpstreamLog],
    receiver: tuple[str, Received],
) -> None:
    endpoint, received = receiver
    upstream_url, seen = upstream_server
    env = batchd_env(tmp_path, BATCH_UPSTREAM_URL=upstream_url, **tracing_to(endpoint))
    process, base_url = await start_batchd(env, tmp_path)
    created_ids = []
    try:
        async with aiohttp.ClientSession(base_url=base_url, headers=AUTH) as http:
            for hostile in HOSTILE_TRACEPARENTS:
                created = await create_batch(http, OPERATIONS[:1], headers={"traceparent": hostile})
                await wait_completed(http, created["id"])
                created_ids.append(created["id"])
    finally:
        assert await process.stop() == 0, process.log()
    rests = received.named("POST /v1/batches")
    assert len(rests) == len(HOSTILE_TRACEPARENTS)
    assert all(rest.parent_span_id == "" for rest in rests)
    trace_ids = {rest.trace_id for rest in rests}
    assert len(trace_ids) == len(HOSTILE_TRACEPARENTS)
    assert "4bf92f3577b34da6a3ce929d0e0e4736" not in trace_ids
    # Each batch's operation went upstream in its own request's new trace.
    assert {trace_context(request)[0] for request in seen.requests} == trace_ids
    with sqlite3.connect(tmp_path / "batchd.db") as database:
        stored = [row[0] for row in database.execute("SELECT traceparent FROM batches")]
    assert all(TRACEPARENT.fullmatch(value) for value in stored), stored


@pytest.mark.parametrize(
    "off",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_SDK_DISABLED": "true"},
    ],
    ids=["unconfigured", "exporter-none", "sdk-disabled"],
)
async def test_tracing_off_exports_nothing_and_sends_no_traceparent(
    tmp_path: Path,
    upstream_server: tuple[str, UpstreamLog],
    receiver: tuple[str, Received],
    off: dict[str, str],
) -> None:
    endpoint, received = receiver
    upstream_url, seen = upstream_server
    # An endpoint alone turns tracing on; these say off all the same.
    overrides = {**TRACING_OFF, **off}
    if off:
        overrides["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    env = batchd_env(tmp_path, BATCH_UPSTREAM_URL=upstream_url, **overrides)
    process, base_url = await start_batchd(env, tmp_path)
    try:
        async with aiohttp.ClientSession(base_url=base_url, headers=AUTH) as http:
            created = await create_batch(
                http,
                OPERATIONS,
                headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
            )
            await wait_completed(http, created["id"])
    finally:
        assert await process.stop() == 0, process.log()
    assert received.posts == 0
    assert len(seen.requests) == len(OPERATIONS)
    assert all("traceparent" not in request.headers for request in seen.requests)
    with sqlite3.connect(tmp_path / "batchd.db") as database:
        stored = [row[0] for row in database.execute("SELECT traceparent FROM batches")]
    assert stored == [None]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"OTEL_TRACES_EXPORTER": "jaeger"},
            "batchd: OTEL_TRACES_EXPORTER='jaeger': batchd exports to one of otlp, console, none",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp,console"},
            "batchd: OTEL_TRACES_EXPORTER='otlp,console': batchd exports to one of otlp, "
            "console, none",
        ),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "batchd: OTEL_EXPORTER_OTLP_PROTOCOL='grpc': batchd exports OTLP over HTTP only "
            "(http/protobuf)",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "sometimes"},
            "batchd: OTEL_TRACES_SAMPLER='sometimes': one of always_on, always_off, "
            "traceidratio, parentbased_always_on, parentbased_always_off, "
            "parentbased_traceidratio",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "nan"},
            "batchd: OTEL_TRACES_SAMPLER_ARG='nan': a ratio from 0 to 1 for "
            "parentbased_traceidratio",
        ),
    ],
    ids=["exporter", "two-exporters", "protocol", "sampler", "ratio"],
)
async def test_a_tracing_setting_batchd_cannot_honour_is_a_one_line_error(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    env = batchd_env(
        tmp_path,
        BATCH_UPSTREAM_URL="http://127.0.0.1:9",
        **tracing_to("http://127.0.0.1:9", **settings),
    )
    process = Process("batchd", env, tmp_path / "batchd.log", command=(str(BATCHD),))
    await process.start()
    assert process.process is not None
    assert await asyncio.wait_for(process.process.wait(), 60) == 2
    await process.stop()
    assert process.log().strip().splitlines() == [message]
