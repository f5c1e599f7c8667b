"""No caller can make the service fail another: large refusals, floods of streams and bytes.

One service and gateway for the module, with a batch limit high enough to send
10,000 invalid operations and stream caps low enough to reach in a test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from batchd.json_values import to_struct
from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests.grpc_client import GET, bearer, details
from tests.processes import (
    OTHER_TOKEN,
    TOKEN,
    Process,
    gateway_env,
    service_env,
    start_gateway,
    start_service,
)
from tests.rapid_reset import rapid_reset
from tests.rest import AUTH, OTHER_AUTH, assert_error
from tests.upstream import running_upstream

MAX_OPERATIONS = 10_000
MORE_VIOLATIONS = "violations.more"
WATCHES_PER_TENANT = 20
WATCHES = 30


class Stack:
    def __init__(self, service: Process, env: dict[str, str], base_url: str) -> None:
        self.service = service
        self.env = env
        self.base_url = base_url
        self.grpc_target = env["BATCH_GRPC_ADDRESS"]


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp("abuse")
    async with running_upstream() as (upstream_url, _):
        env = service_env(
            f"sqlite+aiosqlite:///{directory / 'batchd.db'}",
            upstream_url,
            BATCH_MAX_OPERATIONS=str(MAX_OPERATIONS),
            BATCH_MAX_WATCHES_PER_TENANT=str(WATCHES_PER_TENANT),
            BATCH_MAX_WATCHES=str(WATCHES),
        )
        service = await start_service(env, directory / "service.log")
        gateway, base_url = await start_gateway(
            gateway_env(env["BATCH_GRPC_ADDRESS"]), directory / "gateway.log"
        )
        yield Stack(service, env, base_url)
        await gateway.stop()
        await service.stop()


@pytest.fixture
async def stub(stack: Stack) -> AsyncIterator[batch_pb2_grpc.BatchServiceStub]:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        yield batch_pb2_grpc.BatchServiceStub(channel)


def invalid_operations(count: int, path_length: int) -> list[batch_pb2.BatchOperation]:
    """Operations with two problems each: no method, and a long path with a backslash."""
    path = "/" + "p" * (path_length - 2) + "\\"
    return [batch_pb2.BatchOperation(path=path) for _ in range(count)]


@pytest.mark.parametrize(("count", "path_length"), [(100, 2048), (1000, 1000), (10_000, 200)])
async def test_a_batch_of_many_invalid_operations_is_invalid_not_exhausted(
    stub: batch_pb2_grpc.BatchServiceStub, count: int, path_length: int
) -> None:
    batch = batch_pb2.Batch(batch_operations=invalid_operations(count, path_length))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateBatch(batch_pb2.CreateBatchRequest(batch=batch), metadata=bearer())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    reason, violations = details(raised.value)
    assert reason == "batch.invalid"
    assert violations[:2] == [
        ("batch_operations[0].http_method", "batch_operation.http_method.invalid"),
        ("batch_operations[0].path", "batch_operation.path.invalid"),
    ]
    assert violations[-1][1] == MORE_VIOLATIONS
    assert len(violations) < 2 * count
    assert f"and {2 * count - 5} more" in (raised.value.details() or "")


async def test_a_batch_of_many_invalid_operations_is_a_422(stack: Stack) -> None:
    operations = [{"http_method": "FETCH", "path": "/" + "p" * 2000 + "\\"}] * 100
    document = {"batch": {"batch_operations": operations}}
    async with (
        aiohttp.ClientSession(base_url=stack.base_url, headers=AUTH) as http,
        http.post("/v1/batches", json=document) as response,
    ):
        body = await response.json()
        assert response.status == 422, body
    assert_error(body, "unprocessable_entity", "batch.invalid")
    errors = body["validation_errors"]
    assert errors[0]["attribute"] == "batch_operations[0].http_method"
    assert errors[-1]["code"] == MORE_VIOLATIONS
    assert "more problems" in errors[-1]["message"]


def nested_struct(levels: int) -> bytes:
    """A Struct `{"a": {"a": ...}}` this many levels deep, encoded by hand (protobuf
    itself refuses to build one this deep)."""
    struct = b""
    for _ in range(levels):
        value = field(5, struct)  # Value.struct_value
        struct = field(1, field(1, b"a") + field(2, value))  # Struct.fields entry
    return struct


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return bytes([number << 3 | 2]) + varint(len(payload)) + payload


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def deep_create_request(levels: int) -> bytes:
    operation = field(4, b"/x") + field(6, nested_struct(levels))  # path, body
    return field(1, field(5, operation))  # CreateBatchRequest.batch.batch_operations


@pytest.mark.parametrize(
    ("method", "payload"),
    [
        ("CreateBatch", b"\xff\xff\xff\xff"),
        ("CreateBatch", field(1, b"\x0a\xff")),  # a batch whose field runs past its end
        ("GetBatch", b"\x0a\x05ab"),  # a string longer than the message
        ("ListBatches", b"\x08"),  # a varint cut short
        ("WatchBatch", b"\x0a\x7f"),
        ("CreateBatch", deep_create_request(200)),
        ("CreateBatch", deep_create_request(5000)),
    ],
)
async def test_malformed_requests_are_invalid_arguments(
    stack: Stack, method: str, payload: bytes
) -> None:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        path = f"/batchd.v1.BatchService/{method}"
        if method == "WatchBatch":
            stream = channel.unary_stream(path, None, None)(payload, metadata=bearer())
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async for _ in stream:
                    pass
        else:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await channel.unary_unary(path, None, None)(payload, metadata=bearer())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert details(raised.value) == ("request.malformed", [])
    assert "Error" not in (raised.value.details() or "")


async def test_a_malformed_request_without_a_token_is_unauthenticated(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await channel.unary_unary("/batchd.v1.BatchService/CreateBatch", None, None)(
                b"\xff\xff"
            )
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def idle_batch(stub: batch_pb2_grpc.BatchServiceStub, token: str) -> str:
    operation = batch_pb2.BatchOperation(http_method=GET, path="/slow/10")
    request = batch_pb2.CreateBatchRequest(batch=batch_pb2.Batch(batch_operations=[operation]))
    reply = await stub.CreateBatch(request, metadata=bearer(token))
    return str(reply.batch.id)


async def open_watch(
    stub: batch_pb2_grpc.BatchServiceStub, batch_id: str, token: str
) -> grpc.aio.UnaryStreamCall[Any, Any]:
    """A watch whose first event arrived: it holds one of the tenant's streams."""
    call: grpc.aio.UnaryStreamCall[Any, Any]
    call = stub.WatchBatch(batch_pb2.WatchBatchRequest(id=batch_id), metadata=bearer(token))
    await call.read()
    return call


async def test_event_streams_are_capped_per_tenant_and_in_all(
    stack: Stack, stub: batch_pb2_grpc.BatchServiceStub
) -> None:
    batch_id = await idle_batch(stub, TOKEN)
    other_batch = await idle_batch(stub, OTHER_TOKEN)
    held = [await open_watch(stub, batch_id, TOKEN) for _ in range(WATCHES_PER_TENANT)]
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await open_watch(stub, batch_id, TOKEN)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details(raised.value)[0] == "watch.too_many"
        async with (
            aiohttp.ClientSession(base_url=stack.base_url, headers=AUTH) as http,
            http.get(f"/v1/batches/{batch_id}/events") as response,
        ):
            assert response.status == 429
            assert int(response.headers["Retry-After"]) >= 1
            assert_error(await response.json(), "too_many_requests", "watch.too_many")
        # Another tenant is served, reads and streams, up to what the process holds.
        async with (
            aiohttp.ClientSession(base_url=stack.base_url, headers=OTHER_AUTH) as http,
            http.get(f"/v1/batches/{other_batch}") as response,
        ):
            assert response.status == 200
        held += [
            await open_watch(stub, other_batch, OTHER_TOKEN)
            for _ in range(WATCHES - WATCHES_PER_TENANT)
        ]
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await open_watch(stub, other_batch, OTHER_TOKEN)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # A stream that ends gives its place back.
        await replaced(held, -1, open_watch(stub, other_batch, OTHER_TOKEN))
    finally:
        await release(held)


async def replaced(
    held: list[grpc.aio.UnaryStreamCall[Any, Any]],
    index: int,
    opening: Awaitable[grpc.aio.UnaryStreamCall[Any, Any]],
) -> None:
    """Ends the held stream at `index`, then opens another once its place is given back."""
    held.pop(index).cancel()
    await asyncio.sleep(0.2)
    held.append(await opening)


async def release(held: list[grpc.aio.UnaryStreamCall[Any, Any]]) -> None:
    for call in held:
        call.cancel()
    await asyncio.sleep(0.2)


async def open_export(
    stub: batch_pb2_grpc.BatchServiceStub, token: str
) -> grpc.aio.UnaryStreamCall[Any, Any]:
    """An export whose first page arrived and whose reader then stops: the rest of its
    batch (8 MiB of request bodies) cannot fit the stream's flow-control window, so it
    holds one of the tenant's streams."""
    body = to_struct({"padding": "x" * (64 << 10)})
    operations = [batch_pb2.BatchOperation(http_method=GET, path="/slow/10", body=body)] * 128
    request = batch_pb2.CreateBatchRequest(batch=batch_pb2.Batch(batch_operations=operations))
    created = await stub.CreateBatch(request, metadata=bearer(token))
    call: grpc.aio.UnaryStreamCall[Any, Any]
    call = stub.ExportBatchOperations(
        batch_pb2.ExportBatchOperationsRequest(id=created.batch.id), metadata=bearer(token)
    )
    await call.read()
    return call


async def test_exports_and_event_streams_share_the_tenants_streams(
    stack: Stack, stub: batch_pb2_grpc.BatchServiceStub
) -> None:
    """Exports have no deadline, as watches: one tenant's unread exports could otherwise
    take every stream of the gateway's connection, and every other tenant's calls with it."""
    batch_id = await idle_batch(stub, TOKEN)
    held = [await open_export(stub, TOKEN)]
    try:
        held += [await open_watch(stub, batch_id, TOKEN) for _ in range(WATCHES_PER_TENANT - 1)]
        for opening, code in (
            (open_watch(stub, batch_id, TOKEN), "watch.too_many"),
            (open_export(stub, TOKEN), "export.too_many"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await opening
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert details(raised.value)[0] == code
        # The export that ends gives its place back.
        await replaced(held, 0, open_watch(stub, batch_id, TOKEN))
    finally:
        await release(held)


@pytest.mark.parametrize("count", [1001, 40_000, 400_000])
async def test_lists_filter_by_at_most_1000_ids(
    stub: batch_pb2_grpc.BatchServiceStub, count: int
) -> None:
    ids = [str(uuid.UUID(int=n)) for n in range(count)]
    for call, field in (
        (stub.ListBatches(batch_pb2.ListBatchesRequest(ids=ids), metadata=bearer()), "ids"),
        (
            stub.ListBatchOperations(
                batch_pb2.ListBatchOperationsRequest(batch_ids=ids), metadata=bearer()
            ),
            "batch_ids",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
        assert details(raised.value) == ("list.invalid", [(field, f"{field}.too_long")])


async def test_a_list_filtered_by_1000_ids_is_answered(
    stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    batch_id = await idle_batch(stub, TOKEN)
    ids = [batch_id] + [str(uuid.UUID(int=n)) for n in range(999)]
    reply = await stub.ListBatches(batch_pb2.ListBatchesRequest(ids=ids), metadata=bearer())
    assert [batch.id for batch in reply.batches] == [batch_id]
    request = batch_pb2.ListBatchOperationsRequest(batch_ids=ids)
    reply = await stub.ListBatchOperations(request, metadata=bearer())
    assert reply.total_size == 1


def peak_memory(process: Process) -> int:
    """The process's resident memory at its highest so far, in bytes (VmHWM)."""
    assert process.process is not None
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) * 1024


async def test_a_refused_page_is_refused_before_it_is_built(tmp_path: Path) -> None:
    """100 operations with 1 MB responses: far more than one reply carries."""
    async with running_upstream() as (upstream_url, _):
        env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}", upstream_url)
        service = await start_service(env, tmp_path / "service.log")
        try:
            async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
                stub = batch_pb2_grpc.BatchServiceStub(channel)
                operation = batch_pb2.BatchOperation(
                    http_method=GET, path="/huge", query_params=to_struct({"bytes": "1000000"})
                )
                batch = batch_pb2.Batch(batch_operations=[operation] * 100)
                created = await stub.CreateBatch(
                    batch_pb2.CreateBatchRequest(batch=batch), metadata=bearer()
                )
                await finished(stub, created.batch.id)
                before = peak_memory(service)
                request = batch_pb2.ListBatchOperationsRequest(page_size=100)
                for _ in range(3):
                    with pytest.raises(grpc.aio.AioRpcError) as raised:
                        await stub.ListBatchOperations(request, metadata=bearer())
                    assert details(raised.value) == (
                        "list.invalid",
                        [("page_size", "list.limit.too_large")],
                    )
                grown = peak_memory(service) - before
        finally:
            await service.stop()
    # Built whole, the refused reply alone would take 100 MB (main grew 950 MB over
    # these three calls); read a few rows at a time, it stops at one message.
    assert grown < 100 * 1_000_000, grown


async def finished(stub: batch_pb2_grpc.BatchServiceStub, batch_id: str) -> None:
    """Waits for the batch in its basic view: the full one would read its responses."""
    for _ in range(600):
        reply = await stub.GetBatch(batch_pb2.GetBatchRequest(id=batch_id), metadata=bearer())
        if reply.batch.status == batch_pb2.BATCH_STATUS_COMPLETED:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(batch_id)


async def test_a_rapid_reset_client_is_cut_off_while_others_are_served(stack: Stack) -> None:
    port = int(stack.grpc_target.rsplit(":", 1)[1])
    # grpc's default would cut it off after a minute (1% of resets ping, a minute to
    # answer): with the service's limits, within PING_TIMEOUT_MS.
    attack = asyncio.create_task(asyncio.to_thread(rapid_reset, port, 3_000_000, 30))
    answered = []
    async with aiohttp.ClientSession(base_url=stack.base_url, headers=OTHER_AUTH) as http:
        while not attack.done():
            async with http.get("/v1/batches") as response:
                answered.append(response.status)
            await asyncio.sleep(0.05)
    outcome = await attack
    assert outcome.cut_off, f"{outcome.streams} streams in {outcome.seconds:.1f}s, never cut off"
    assert answered and set(answered) == {200}, answered
    print(f"cut off after {outcome.streams} streams in {outcome.seconds:.1f}s: {outcome.cut_off}")
