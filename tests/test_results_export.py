"""Results export (issue 15): `GET /v1/batches/{id}/results` as NDJSON and the
ExportBatchOperations stream: every operation in submitted order, as the list shows it,
in bounded pages, in bounded memory, stopped by a client that leaves."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from batchd.v1 import batch_pb2, batch_pb2_grpc
from service.export import PAGE_BUDGET_BYTES
from tests.grpc_client import GET, POST, bearer, operation, wait_completed, wait_finished_at_least
from tests.processes import (
    Process,
    free_port,
    gateway_env,
    service_env,
    serving,
    start_gateway,
)
from tests.rest import AUTH, assert_error, assert_operation, call, create_batch
from tests.shared_stack import fresh_token
from tests.upstream import running_upstream

NDJSON = "application/x-ndjson"
UNKNOWN_ID = "4c1ec4d4-4b0f-4f4e-9a8e-000000000000"


async def export_lines(
    http: aiohttp.ClientSession, batch_id: str, query: str = "", **kwargs: Any
) -> list[dict[str, Any]]:
    async with http.get(f"/v1/batches/{batch_id}/results{query}", **kwargs) as response:
        body = await response.read()
        assert response.status == 200, body[:500]
        assert response.content_type == NDJSON
    assert body == b"" or body.endswith(b"\n")
    return [json.loads(line) for line in body.splitlines()]


async def listed_in_order(http: aiohttp.ClientSession, batch_id: str) -> list[dict[str, Any]]:
    """The batch's operations as the list endpoint shows them, in submitted order."""
    shown: list[dict[str, Any]] = []
    page = 1
    while True:
        path = f"/v1/batch_operations?batch_ids[]={batch_id}&sort=position:asc&limit=100"
        reply = await call(http, "GET", f"{path}&page={page}", 200)
        shown += reply["data"]
        if len(shown) >= reply["pagination"]["count"]:
            return shown
        page += 1


# --- on the shared stack -----------------------------------------------------------------


async def test_the_export_holds_every_operation_in_submitted_order_as_the_list_shows_it(
    api: aiohttp.ClientSession,
) -> None:
    codes = [200, 404, 500, 201]
    operations = [
        {"http_method": "POST", "path": f"/status/{codes[n % 4]}", "body": {"n": n, "ü": "\n"}}
        for n in range(250)
    ]
    operations[7] = {"http_method": "POST", "path": "/cutoff"}
    created = await create_batch(api, operations)
    while (await call(api, "GET", f"/v1/batches/{created['id']}", 200))["status"] != "completed":
        await asyncio.sleep(0.05)
    lines = await export_lines(api, created["id"])
    assert lines == await listed_in_order(api, created["id"])
    assert [line["body"]["n"] for line in lines if line["body"]] == [
        n for n in range(250) if n != 7
    ]
    for line in lines:
        assert_operation(line, extended=True)
    failed = await export_lines(api, created["id"], "?status[]=failed&status[]=timed_out")
    assert [line["path"] for line in failed] == ["/cutoff"]
    completed = await export_lines(api, created["id"], "?status[]=completed")
    assert len(completed) == 249
    assert completed == [line for line in lines if line["status"] == "completed"]
    assert await export_lines(api, created["id"], "?status[]=pending") == []


async def test_an_unfinished_batch_exports_what_is_there_now(api: aiohttp.ClientSession) -> None:
    operations = [{"http_method": "GET", "path": f"/slow/0.2/{n}"} for n in range(30)]
    document = {
        "batch": {"batch_operations": operations, "execution_options": {"sequential": True}}
    }
    created = await call(api, "POST", "/v1/batches", 200, json=document)
    while (await call(api, "GET", f"/v1/batches/{created['id']}", 200))[
        "finished_batch_operations_count"
    ] < 2:
        await asyncio.sleep(0.05)
    lines = await export_lines(api, created["id"])
    assert [line["path"] for line in lines] == [op["path"] for op in operations]
    statuses = [line["status"] for line in lines]
    assert statuses[:2] == ["completed", "completed"] and statuses[-1] == "pending"
    await call(api, "POST", f"/v1/batches/{created['id']}/cancel", 200)


async def test_another_tenant_and_unknown_ids_get_404s(
    api: aiohttp.ClientSession, other_auth: dict[str, str]
) -> None:
    created = await create_batch(api, [{"http_method": "GET", "path": "/echo/secret"}])
    for batch_id, headers in (
        (created["id"], other_auth),
        (UNKNOWN_ID, {}),
        ("not-a-uuid", {}),
    ):
        refused = await call(api, "GET", f"/v1/batches/{batch_id}/results", 404, headers=headers)
        assert_error(refused, "not_found", "batch.not_found")
        assert "secret" not in json.dumps(refused)


async def test_bad_status_filters_are_refused_in_the_contracts_format(
    api: aiohttp.ClientSession,
) -> None:
    created = await create_batch(api, [{"http_method": "GET", "path": "/echo/s"}])
    path = f"/v1/batches/{created['id']}/results"
    assert_error(await call(api, "GET", f"{path}?status[]=done", 422), "unprocessable_entity")
    assert_error(await call(api, "GET", f"{path}?status=failed", 400), "bad_request")
    anonymous = {"Authorization": "Bearer nobody"}
    assert_error(await call(api, "GET", path, 401, headers=anonymous), "unauthorized")


async def test_grpc_streams_bounded_pages_in_submitted_order(
    shared_stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    token = fresh_token()
    batch = batch_pb2.Batch(
        batch_operations=[operation(POST, f"/status/{200 + n % 2 * 300}") for n in range(230)]
    )
    created = await shared_stub.CreateBatch(
        batch_pb2.CreateBatchRequest(batch=batch), metadata=bearer(token)
    )
    await wait_completed(shared_stub, created.batch.id, token=token)
    request = batch_pb2.ExportBatchOperationsRequest(id=created.batch.id)
    pages = [
        page async for page in shared_stub.ExportBatchOperations(request, metadata=bearer(token))
    ]
    assert [len(page.batch_operations) for page in pages] == [100, 100, 30]
    positions = [op.position for page in pages for op in page.batch_operations]
    assert positions == list(range(230))
    request.statuses.append(batch_pb2.BATCH_OPERATION_STATUS_COMPLETED)
    completed = [
        op.response_status
        async for page in shared_stub.ExportBatchOperations(request, metadata=bearer(token))
        for op in page.batch_operations
    ]
    assert len(completed) == 230 and completed.count(500) == 115
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in shared_stub.ExportBatchOperations(
            batch_pb2.ExportBatchOperationsRequest(id=created.batch.id),
            metadata=bearer(fresh_token()),
        ):
            pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_pages_of_large_responses_stay_within_the_page_budget(
    shared_stub: batch_pb2_grpc.BatchServiceStub,
) -> None:
    """Read with gRPC's default 4 MiB receive limit, as most clients are."""
    token = fresh_token()
    operations = [
        operation(GET, "/huge", query_params={"bytes": 300_000, "n": n}) for n in range(12)
    ]
    created = await shared_stub.CreateBatch(
        batch_pb2.CreateBatchRequest(batch=batch_pb2.Batch(batch_operations=operations)),
        metadata=bearer(token),
    )
    get = batch_pb2.GetBatchRequest(id=created.batch.id)
    while (await shared_stub.GetBatch(get, metadata=bearer(token))).batch.status != (
        batch_pb2.BATCH_STATUS_COMPLETED
    ):
        await asyncio.sleep(0.05)
    request = batch_pb2.ExportBatchOperationsRequest(id=created.batch.id)
    pages = [
        page async for page in shared_stub.ExportBatchOperations(request, metadata=bearer(token))
    ]
    # About 300 KB each: three to a 1 MiB page, never all twelve in one message.
    assert [len(page.batch_operations) for page in pages] == [3, 3, 3, 3]
    assert all(page.ByteSize() <= PAGE_BUDGET_BYTES for page in pages)
    positions = [op.position for page in pages for op in page.batch_operations]
    assert positions == list(range(12))


# --- a large batch, on a service of its own --------------------------------------------

LARGE_OPERATIONS = 1000
RESPONSE_BYTES = 100_000
MAX_RSS_GROWTH_KIB = 64 * 1024


@dataclass(frozen=True)
class Large:
    service: Process
    stub: batch_pb2_grpc.BatchServiceStub
    base_url: str
    metrics_url: str
    batch_id: str


@pytest.fixture
async def large(database_url: str, tmp_path: Path) -> AsyncIterator[Large]:
    """A service, its gateway and a finished batch of 1,000 operations whose stored
    responses are about 100 KB each (about 100 MB in all)."""
    metrics_address = f"127.0.0.1:{free_port()}"
    async with running_upstream() as (upstream_url, _):
        env = service_env(database_url, upstream_url, BATCH_METRICS_ADDRESS=metrics_address)
        async with serving(env, tmp_path / "service.log") as (service, stub):
            operations = [
                operation(GET, "/huge", query_params={"bytes": RESPONSE_BYTES, "n": n})
                for n in range(LARGE_OPERATIONS)
            ]
            created = await stub.CreateBatch(
                batch_pb2.CreateBatchRequest(batch=batch_pb2.Batch(batch_operations=operations)),
                metadata=bearer(),
            )
            await asyncio.wait_for(
                wait_finished_at_least(stub, created.batch.id, LARGE_OPERATIONS), 300
            )
            gateway, base_url = await start_gateway(
                gateway_env(env["BATCH_GRPC_ADDRESS"]), tmp_path / "gateway.log"
            )
            try:
                yield Large(
                    service, stub, base_url, f"http://{metrics_address}/metrics", created.batch.id
                )
            finally:
                await gateway.stop()


def memory_kib(pid: int, name: str) -> int:
    """VmRSS or VmHWM (the peak resident set) of a process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{name}:\s+(\d+) kB$", status, re.MULTILINE)
    assert match is not None, status
    return int(match.group(1))


def reset_peak(pid: int) -> int:
    """Resets the process's VmHWM to its current RSS (Linux clear_refs 5); that RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return memory_kib(pid, "VmHWM")


async def metric(metrics_url: str, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as response:
        text = await response.text()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


async def test_a_1000_operation_export_streams_in_order_within_64_mib_of_service_memory(
    large: Large,
) -> None:
    assert large.service.process is not None
    pid = large.service.process.pid
    before = reset_peak(pid)
    lines, expected_n, pending = 0, 0, b""
    async with (
        aiohttp.ClientSession(base_url=large.base_url, headers=AUTH) as http,
        http.get(f"/v1/batches/{large.batch_id}/results") as response,
    ):
        assert response.status == 200 and response.content_type == NDJSON
        async for chunk in response.content.iter_chunked(1 << 20):
            *complete, pending = (pending + chunk).split(b"\n")
            for line in complete:
                shown = json.loads(line)
                assert shown["query_params"]["n"] == expected_n
                assert len(shown["response_body"]["data"]) == RESPONSE_BYTES
                expected_n += 1
                lines += 1
    assert pending == b""
    peak = memory_kib(pid, "VmHWM")
    growth = peak - before
    print(f"service RSS {before} KiB before the export, peak {peak} KiB: +{growth} KiB")
    assert lines == LARGE_OPERATIONS
    assert growth < MAX_RSS_GROWTH_KIB, f"the export grew the service's peak RSS by {growth} KiB"


async def test_a_client_that_leaves_mid_export_stops_the_services_export(large: Large) -> None:
    exported_before = await metric(large.metrics_url, "batchd_exported_operations_total")
    async with aiohttp.ClientSession(base_url=large.base_url, headers=AUTH) as http:
        response = await http.get(f"/v1/batches/{large.batch_id}/results")
        assert response.status == 200
        first = await response.content.read(64 * 1024)
        assert first.startswith(b'{"id":')
        assert await metric(large.metrics_url, "batchd_export_streams") == 1
        response.close()  # drops the connection mid-body
    await until_no_export_streams(large.metrics_url)
    stopped_at = await metric(large.metrics_url, "batchd_exported_operations_total")
    await asyncio.sleep(1)
    assert await metric(large.metrics_url, "batchd_exported_operations_total") == stopped_at
    # Flow control held the service back: far from the whole batch was read.
    assert stopped_at - exported_before < LARGE_OPERATIONS


async def test_a_canceled_grpc_export_stops(large: Large) -> None:
    exported_before = await metric(large.metrics_url, "batchd_exported_operations_total")
    call = large.stub.ExportBatchOperations(
        batch_pb2.ExportBatchOperationsRequest(id=large.batch_id), metadata=bearer()
    )
    first = await call.read()
    assert isinstance(first, batch_pb2.ExportBatchOperationsResponse)
    assert first.batch_operations[0].position == 0
    call.cancel()
    await until_no_export_streams(large.metrics_url)
    stopped_at = await metric(large.metrics_url, "batchd_exported_operations_total")
    assert stopped_at - exported_before < LARGE_OPERATIONS


async def until_no_export_streams(metrics_url: str, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await metric(metrics_url, "batchd_export_streams") != 0:
        assert loop.time() < deadline, "the service's export did not stop"
        await asyncio.sleep(0.05)
