"""The in-process channel (service/in_process.py) answers as the gRPC server does: the
same servicer and interceptor behind both, compared call by call, and what only a
channel can show: deadlines, cancellation, the call's own task and its request id."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from batchd.logs import REQUEST_ID, REQUEST_ID_METADATA
from batchd.v1 import batch_pb2, batch_pb2_grpc
from gateway.errors import from_rpc_error
from service.database import Database
from service.in_process import InProcessChannel
from service.server import Services, build_server
from tests.grpc_client import GET, bearer, operation
from tests.processes import free_port
from tests.servicers import migrated_sqlite, servicer_of, sqlite_database

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Both:
    remote: batch_pb2_grpc.BatchServiceStub
    local: batch_pb2_grpc.BatchServiceStub
    channel: InProcessChannel
    database: Database
    services: Services


@pytest.fixture
async def both(tmp_path: Path) -> AsyncIterator[Both]:
    """One servicer, served over loopback gRPC and in-process; its read pool holds one
    connection and waits for it long enough that a held one means a deadline."""
    url = await migrated_sqlite(tmp_path)
    database = sqlite_database(url, pool_size=1, max_overflow=0, pool_timeout=30)
    services = Services.of(servicer_of(database, url))
    address = f"127.0.0.1:{free_port()}"
    server = build_server(services, address, max_watches=10)
    await server.start()
    channel = services.in_process_channel()
    try:
        async with grpc.aio.insecure_channel(address) as remote:
            yield Both(
                batch_pb2_grpc.BatchServiceStub(remote),
                batch_pb2_grpc.BatchServiceStub(channel),
                channel,
                database,
                services,
            )
    finally:
        await server.stop(None)
        await database.dispose()


async def failure(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


def outcome(error: grpc.aio.AioRpcError) -> tuple[Any, ...]:
    """All a caller reads of a failure, the gateway's contract error included."""
    problem = from_rpc_error(error)
    return error.code(), error.details(), problem.status, problem.as_json(), problem.headers


def new_batch() -> batch_pb2.CreateBatchRequest:
    batch = batch_pb2.Batch(batch_operations=[operation(GET, "/items", query_params={"a": 1})])
    return batch_pb2.CreateBatchRequest(batch=batch)


async def test_failures_read_the_same_both_ways(both: Both) -> None:
    calls = [
        ("GetBatch", batch_pb2.GetBatchRequest(id=UNKNOWN_ID), bearer()),
        ("GetBatch", batch_pb2.GetBatchRequest(id="not-an-id"), bearer()),
        ("GetBatchOperation", batch_pb2.GetBatchOperationRequest(id=UNKNOWN_ID), bearer()),
        ("ListBatches", batch_pb2.ListBatchesRequest(), ()),
        ("ListBatches", batch_pb2.ListBatchesRequest(), bearer("no-such-token")),
        ("ListBatchOperations", batch_pb2.ListBatchOperationsRequest(page_size=-1), bearer()),
        ("CreateBatch", batch_pb2.CreateBatchRequest(), bearer()),
        ("CancelBatch", batch_pb2.CancelBatchRequest(id=UNKNOWN_ID), bearer()),
    ]
    for method, request, metadata in calls:
        remote = await failure(getattr(both.remote, method)(request, metadata=metadata))
        local = await failure(getattr(both.local, method)(request, metadata=metadata))
        assert outcome(local) == outcome(remote), method
        assert local.code() != grpc.StatusCode.UNKNOWN


async def test_replies_are_the_same_both_ways(both: Both) -> None:
    created = await both.local.CreateBatch(new_batch(), metadata=bearer())
    batch_id = created.batch.id
    full = batch_pb2.GetBatchRequest(id=batch_id, view=batch_pb2.BATCH_VIEW_FULL)
    remote = await both.remote.GetBatch(full, metadata=bearer())
    local = await both.local.GetBatch(full, metadata=bearer())
    assert local == remote
    [op] = local.batch.batch_operations
    get_op = batch_pb2.GetBatchOperationRequest(id=op.id)
    assert await both.local.GetBatchOperation(get_op, metadata=bearer()) == (
        await both.remote.GetBatchOperation(get_op, metadata=bearer())
    )
    canceled = await both.local.CancelBatch(
        batch_pb2.CancelBatchRequest(id=batch_id), metadata=bearer()
    )
    assert canceled.batch.status == batch_pb2.BATCH_STATUS_CANCELED
    # A finished batch's stream is its state, then its end: the same both ways.
    watch = batch_pb2.WatchBatchRequest(id=batch_id)
    remote_events = [event async for event in both.remote.WatchBatch(watch, metadata=bearer())]
    local_events = [event async for event in both.local.WatchBatch(watch, metadata=bearer())]
    assert local_events == remote_events
    assert [event.batch.status for event in local_events][-1] == batch_pb2.BATCH_STATUS_CANCELED


async def test_a_stream_fails_as_over_grpc(both: Both) -> None:
    for metadata in ((), bearer()):
        watch = batch_pb2.WatchBatchRequest(id=UNKNOWN_ID)
        remote = await failure(anext(aiter(both.remote.WatchBatch(watch, metadata=metadata))))
        local = await failure(anext(aiter(both.local.WatchBatch(watch, metadata=metadata))))
        assert outcome(local) == outcome(remote)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def until(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


async def test_a_cancelled_stream_cancels_its_handler(both: Both) -> None:
    created = await both.local.CreateBatch(new_batch(), metadata=bearer())
    cancelled = sample("batchd_rpc_requests_total", method="WatchBatch", code="CANCELLED")
    open_before = sample("batchd_watch_streams")
    call = both.local.WatchBatch(
        batch_pb2.WatchBatchRequest(id=created.batch.id), metadata=bearer()
    )
    first = await anext(aiter(call))
    assert first.batch.status == batch_pb2.BATCH_STATUS_PENDING
    assert sample("batchd_watch_streams") == open_before + 1
    call.cancel()
    await until(lambda: sample("batchd_watch_streams") == open_before)
    await until(
        lambda: (
            sample("batchd_rpc_requests_total", method="WatchBatch", code="CANCELLED")
            == cancelled + 1
        )
    )
    assert call.cancelled()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() == grpc.StatusCode.CANCELLED


async def test_a_deadline_cancels_the_handler_and_fails_the_call(both: Both) -> None:
    request = batch_pb2.ListBatchesRequest()
    # The one read connection is held: the call waits for it until its deadline.
    async with both.database.read():
        remote = await failure(both.remote.ListBatches(request, metadata=bearer(), timeout=0.3))
        local = await failure(both.local.ListBatches(request, metadata=bearer(), timeout=0.3))
    assert local.code() == remote.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert from_rpc_error(local).status == from_rpc_error(remote).status == 503
    # The handler was cancelled, not left waiting: the pool serves the next call at once.
    await both.local.ListBatches(request, metadata=bearer(), timeout=2)


async def test_a_caller_cancelled_midway_cancels_the_call(both: Both) -> None:
    request = batch_pb2.ListBatchesRequest()
    async with both.database.read():
        waiting = asyncio.ensure_future(both.local.ListBatches(request, metadata=bearer()))
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    await both.local.ListBatches(request, metadata=bearer(), timeout=2)


class _RequestIds(logging.Handler):
    """The request id each `rpc` event was logged under."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str | None] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "rpc":
            self.seen.append(REQUEST_ID.get())


async def test_each_call_has_its_request_id_in_a_task_of_its_own(both: Both) -> None:
    handler = _RequestIds()
    logger = logging.getLogger("batchd.rpc")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    token = REQUEST_ID.set("the-callers-own")
    try:
        metadata = (*bearer(), (REQUEST_ID_METADATA, "req-in-process-1"))
        await both.local.ListBatches(batch_pb2.ListBatchesRequest(), metadata=metadata)
        await both.local.ListBatches(batch_pb2.ListBatchesRequest(), metadata=bearer())
        # What the call set stays in its task: the caller's context is untouched.
        assert REQUEST_ID.get() == "the-callers-own"
    finally:
        REQUEST_ID.reset(token)
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert handler.seen[0] == "req-in-process-1"
    # Without one, the call gets a fresh id, not its caller's.
    assert handler.seen[1] not in (None, "the-callers-own", "req-in-process-1")


async def test_an_unknown_method_is_unimplemented(both: Both) -> None:
    unknown = both.channel.unary_unary("/batchd.v1.BatchService/NoSuchMethod")
    error = await failure(unknown(batch_pb2.GetBatchRequest(), metadata=bearer()))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


# Generic in the type stubs only, as in service/rpc_scope.py.
class Stamping(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
):
    """A client interceptor as tracing's works: it adds metadata, and wraps a stream's
    responses in a generator of its own, which must be closed when the call ends."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    def stamped(self, details: Any) -> Any:
        metadata = (*(details.metadata or ()), (REQUEST_ID_METADATA, "stamped-by-client"))
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, grpc.aio.Metadata(*metadata), None, None
        )

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self.stamped(details), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        call = await continuation(self.stamped(details), request)

        async def responses() -> AsyncIterator[Any]:
            try:
                async for response in call:
                    yield response
            finally:
                self.closed.set()

        return responses()


async def test_client_interceptors_run_before_the_server_side(both: Both) -> None:
    stamping = Stamping()
    stub = batch_pb2_grpc.BatchServiceStub(both.services.in_process_channel([stamping]))
    handler = _RequestIds()
    logger = logging.getLogger("batchd.rpc")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        created = await stub.CreateBatch(new_batch(), metadata=bearer())
        error = await failure(
            stub.GetBatch(batch_pb2.GetBatchRequest(id=UNKNOWN_ID), metadata=bearer())
        )
        remote = await failure(
            both.remote.GetBatch(batch_pb2.GetBatchRequest(id=UNKNOWN_ID), metadata=bearer())
        )
        assert outcome(error) == outcome(remote)
        call = stub.WatchBatch(batch_pb2.WatchBatchRequest(id=created.batch.id), metadata=bearer())
        first = await call.read()
        assert first.batch.id == created.batch.id
        call.cancel()
        await asyncio.wait_for(stamping.closed.wait(), 5)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert handler.seen[:2] == ["stamped-by-client", "stamped-by-client"]
