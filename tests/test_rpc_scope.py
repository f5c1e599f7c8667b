"""Every BatchService RPC, streaming or not, goes through the one interceptor: request id,
rich errors, metrics and one log event; health checks and reflection pass untouched."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from batchd.v1 import batch_pb2, batch_pb2_grpc
from service.auth import Tenants
from service.rpc_scope import RpcScope, RpcScopeInterceptor
from service.server import Services, build_server
from tests.grpc_client import bearer
from tests.processes import Process, free_port, service_env, serving
from tests.servicers import migrated_sqlite, servicer_of, sqlite_database
from tests.upstream import running_upstream


def error_reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no rich status in the trailers"
    info = error_details_pb2.ErrorInfo()
    [detail] = status.details
    assert detail.Unpack(info)
    return str(info.reason)


async def watch(
    stub: batch_pb2_grpc.BatchServiceStub, batch_id: str, metadata: Any
) -> list[batch_pb2.WatchBatchResponse]:
    request = batch_pb2.WatchBatchRequest(id=batch_id)
    return [event async for event in stub.WatchBatch(request, metadata=metadata, timeout=30)]


@dataclass(frozen=True)
class Observed:
    process: Process
    stub: batch_pb2_grpc.BatchServiceStub
    metrics_url: str


@pytest.fixture
async def observed(database_url: str, tmp_path: Path) -> AsyncIterator[Observed]:
    """A service logging every RPC and serving its metrics."""
    metrics_address = f"127.0.0.1:{free_port()}"
    observability = {"BATCH_LOG_LEVEL": "INFO", "BATCH_METRICS_ADDRESS": metrics_address}
    async with running_upstream() as (upstream_url, _):
        env = service_env(database_url, upstream_url, **observability)
        async with serving(env, tmp_path / "service.log") as (process, stub):
            yield Observed(process, stub, f"http://{metrics_address}/metrics")


def rpc_events(process: Process) -> list[tuple[str, str, str]]:
    """(rpc, code, request_id) of each RPC's log event."""
    logged = [json.loads(line) for line in process.log().splitlines() if line.startswith("{")]
    return [(e["rpc"], e["code"], e["request_id"]) for e in logged if e.get("message") == "rpc"]


async def test_watch_batch_gets_the_request_id_errors_metrics_and_log_event_of_every_rpc(
    observed: Observed,
) -> None:
    stub = observed.stub
    operation = batch_pb2.BatchOperation(http_method=batch_pb2.HTTP_METHOD_GET, path="/echo/a")
    created = await stub.CreateBatch(
        batch_pb2.CreateBatchRequest(batch=batch_pb2.Batch(batch_operations=[operation])),
        metadata=bearer(),
    )
    events = await watch(stub, created.batch.id, (*bearer(), ("x-request-id", "watch-ok")))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await watch(stub, str(uuid.uuid4()), (*bearer(), ("x-request-id", "watch-missing")))
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await watch(stub, created.batch.id, ())
    async with aiohttp.ClientSession() as session:
        response = await session.get(observed.metrics_url)
        exposition = await response.text()
    assert events[-1].batch.status == batch_pb2.BATCH_STATUS_COMPLETED
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(missing.value) == "batch.not_found"
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(anonymous.value) == "unauthorized"
    rpcs = rpc_events(observed.process)
    assert [rpc for rpc in rpcs if rpc[2] in ("watch-ok", "watch-missing")] == [
        ("WatchBatch", "OK", "watch-ok"),
        ("WatchBatch", "NOT_FOUND", "watch-missing"),
    ]
    assert {name for name, _, _ in rpcs} == {"CreateBatch", "WatchBatch"}
    for code in ("OK", "NOT_FOUND", "UNAUTHENTICATED"):
        assert f'batchd_rpc_requests_total{{code="{code}",method="WatchBatch"}} 1.0' in exposition
    assert 'method="Check"' not in exposition


async def test_a_watch_the_client_cancels_is_logged_as_canceled_and_closed(
    observed: Observed,
) -> None:
    operation = batch_pb2.BatchOperation(http_method=batch_pb2.HTTP_METHOD_GET, path="/slow/3")
    created = await observed.stub.CreateBatch(
        batch_pb2.CreateBatchRequest(batch=batch_pb2.Batch(batch_operations=[operation])),
        metadata=bearer(),
    )
    call = observed.stub.WatchBatch(
        batch_pb2.WatchBatchRequest(id=created.batch.id),
        metadata=(*bearer(), ("x-request-id", "watch-cancel")),
    )
    first = await call.read()
    assert first.batch.id == created.batch.id
    call.cancel()
    deadline = asyncio.get_running_loop().time() + 10
    while ("WatchBatch", "CANCELLED", "watch-cancel") not in rpc_events(observed.process):
        assert asyncio.get_running_loop().time() < deadline, rpc_events(observed.process)
        await asyncio.sleep(0.02)
    async with aiohttp.ClientSession() as session:
        exposition = await (await session.get(observed.metrics_url)).text()
    assert 'batchd_rpc_requests_total{code="CANCELLED",method="WatchBatch"} 1.0' in exposition
    assert "\nbatchd_watch_streams 0.0\n" in exposition
    # The stream is closed from another task: nothing there may fail.
    assert '"level": "ERROR"' not in observed.process.log()


async def test_a_read_pool_with_no_connection_free_is_unavailable(tmp_path: Path) -> None:
    """The service's own server and servicer over a read pool of one connection, held."""
    url = await migrated_sqlite(tmp_path)
    database = sqlite_database(url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    servicer = servicer_of(database, url)
    address = f"127.0.0.1:{free_port()}"
    server = build_server(Services.of(servicer), address, max_watches=10)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = batch_pb2_grpc.BatchServiceStub(channel)
            async with database.read():
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await stub.ListBatches(batch_pb2.ListBatchesRequest(), metadata=bearer())
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE, raised.value.details()
            # Once the connection is free again, the same call is answered.
            await stub.ListBatches(batch_pb2.ListBatchesRequest(), metadata=bearer())
    finally:
        await server.stop(None)
        await database.dispose()


@dataclass(frozen=True)
class _Details(grpc.HandlerCallDetails):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...] = ()


async def test_an_interceptor_after_the_scope_sees_every_call() -> None:
    """Tracing's interceptor, after the scope, wraps each call anew with what the call
    carries: the scope looks every call up, and answers it with its one wrapping."""
    looked_up: list[str] = []
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        looked_up.append(details.method)
        return handler

    scope = RpcScopeInterceptor(RpcScope(Tenants({})))
    method = "/batchd.v1.BatchService/GetBatch"
    wrapped = [await scope.intercept_service(continuation, _Details(method)) for _ in range(3)]
    assert wrapped[0] is wrapped[1] is wrapped[2]
    assert wrapped[0] is not handler
    assert len(looked_up) == 3


class _Registered:
    """What generated `add_*_to_server` functions register, as a server receives it."""

    def __init__(self) -> None:
        self.generic: list[grpc.GenericRpcHandler[Any, Any]] = []
        self.by_method: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.by_method.update({f"/{service}/{name}": h for name, h in handlers.items()})

    def found(self, method: str) -> Any:
        """The handler of `method` as grpc.aio finds it: registered first, then generic."""
        generic = [h.service(_Details(method)) for h in self.generic]
        return self.by_method.get(method), [h for h in generic if h is not None]


async def test_without_tracing_the_scope_is_in_the_registered_handlers(tmp_path: Path) -> None:
    """No interceptor on the call path: what a server finds for a BatchService method,
    registered or generic, is the scope's one wrapping; health's handlers are as generated."""
    url = await migrated_sqlite(tmp_path)
    database = sqlite_database(url)
    try:
        services = Services.of(servicer_of(database, url))
        assert services.interceptors == ()
        registered = _Registered()
        for add_to_server, servicer in services.registrations():
            add_to_server(servicer, registered)
        by_name, [generic] = registered.found("/batchd.v1.BatchService/GetBatch")
        assert by_name is generic
        assert by_name.unary_unary != services.batches.GetBatch
        _, [check] = registered.found("/grpc.health.v1.Health/Check")
        assert check.unary_unary == services.health.Check
    finally:
        await database.dispose()
