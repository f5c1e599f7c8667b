"""Faults of the machine under a running service: a full disk, a stalled or cut database.

Nothing the upstream answered may be lost or re-sent, the API answers 503 while
the database cannot take writes, and health says so, then recovers by itself.
"""

from __future__ import annotations

import asyncio
import errno
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests import postgres
from tests.grpc_client import GET, POST, bearer, operation, wait_completed
from tests.processes import gateway_env, service_env, start_gateway, start_service
from tests.rest import AUTH
from tests.tcp_proxy import TcpProxy, tcp_proxy
from tests.upstream import UpstreamLog

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@contextmanager
def tiny_filesystem(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(directory: Path) -> Path:
    """Writes a file until the filesystem is full."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as file:
        try:
            while True:
                file.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


async def wait_health(target: str, wanted: int, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        status = None
        while loop.time() < deadline:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            if (status := reply.status) == wanted:
                return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"health stayed {status}, not {wanted}")


def through(proxy: TcpProxy, database: str) -> str:
    """The URL of a PostgreSQL database, reached through the proxy."""
    return postgres.url_of(database, "127.0.0.1", proxy.port)


def assert_each_recorded_as_answered(batch: batch_pb2.Batch, log: UpstreamLog) -> None:
    sends = log.by_idempotency_key()
    for op in batch.batch_operations:
        assert sends[op.id] == 1, f"{op.path} reached the upstream {sends[op.id]} times"
        assert op.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED, op
        assert op.response_status == 200, op


async def test_a_full_disk_answers_503_keeps_results_and_recovers_by_itself(
    upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    with tiny_filesystem(tmp_path / "disk", "6m") as disk:
        env = service_env(
            f"sqlite+aiosqlite:///{disk / 'batchd.db'}",
            upstream_server[0],
            BATCH_MAX_IN_FLIGHT="4",
            BATCH_LEASE_SECONDS="2",
        )
        service = await start_service(env, tmp_path / "service.log")
        gateway, base_url = await start_gateway(
            gateway_env(env["BATCH_GRPC_ADDRESS"]), tmp_path / "gateway.log"
        )
        try:
            async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
                stub = batch_pb2_grpc.BatchServiceStub(channel)
                operations = [operation(POST, f"/slow/0.3/{index}") for index in range(24)]
                created = await stub.CreateBatch(
                    batch_pb2.CreateBatchRequest(
                        batch=batch_pb2.Batch(batch_operations=operations)
                    ),
                    metadata=bearer(),
                )
                filler = fill(disk)
                big = {"http_method": "POST", "path": "/echo/x", "body": {"pad": "x" * 8000}}
                answers: Counter[int] = Counter()
                async with aiohttp.ClientSession() as http:
                    for _ in range(40):
                        async with http.post(
                            f"{base_url}/v1/batches",
                            json={"batch": {"batch_operations": [big] * 50}},
                            headers=AUTH,
                        ) as response:
                            answers[response.status] += 1
                        if answers[503]:
                            break
                    assert answers[503] >= 1, answers
                    assert set(answers) <= {200, 503}, answers
                    await wait_health(env["BATCH_GRPC_ADDRESS"], NOT_SERVING)
                    async with http.get(f"{base_url}/healthz") as response:
                        assert response.status == 503
                    filler.unlink()
                    await wait_health(env["BATCH_GRPC_ADDRESS"], SERVING)
                    async with http.get(f"{base_url}/healthz") as response:
                        assert response.status == 200
                batch = await wait_completed(stub, created.batch.id, timeout=60)
            assert_each_recorded_as_answered(batch, upstream_server[1])
        finally:
            await gateway.stop()
            assert await service.stop() == 0, service.log()
        assert "InvalidRequestError" not in service.log()


async def test_a_database_stall_longer_than_a_lease_loses_and_resends_nothing(
    shared_postgres: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    async with tcp_proxy(postgres.HOST, postgres.PORT) as proxy:
        database_url = through(proxy, shared_postgres)
        env = service_env(
            database_url, upstream_server[0], BATCH_LEASE_SECONDS="2", BATCH_MAX_IN_FLIGHT="4"
        )
        service = await start_service(env, tmp_path / "service.log")
        try:
            async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
                stub = batch_pb2_grpc.BatchServiceStub(channel)
                operations = [
                    operation(GET if index % 2 else POST, f"/slow/0.5/{index}")
                    for index in range(24)
                ]
                created = await stub.CreateBatch(
                    batch_pb2.CreateBatchRequest(
                        batch=batch_pb2.Batch(batch_operations=operations)
                    ),
                    metadata=bearer(),
                )
                while len(upstream_server[1].requests) < 6:
                    await asyncio.sleep(0.01)
                proxy.stall()
                await wait_health(env["BATCH_GRPC_ADDRESS"], NOT_SERVING)
                await asyncio.sleep(5)
                proxy.resume()
                await wait_health(env["BATCH_GRPC_ADDRESS"], SERVING)
                batch = await wait_completed(stub, created.batch.id, timeout=60)
            assert_each_recorded_as_answered(batch, upstream_server[1])
        finally:
            assert await service.stop() == 0, service.log()
        await postgres.truncate_all(shared_postgres)


async def test_health_is_not_serving_while_the_database_is_cut_off(
    shared_postgres: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    async with tcp_proxy(postgres.HOST, postgres.PORT) as proxy:
        database_url = through(proxy, shared_postgres)
        env = service_env(database_url, upstream_server[0])
        service = await start_service(env, tmp_path / "service.log")
        try:
            proxy.cut()
            await wait_health(env["BATCH_GRPC_ADDRESS"], NOT_SERVING)
            proxy.resume()
            await wait_health(env["BATCH_GRPC_ADDRESS"], SERVING)
        finally:
            assert await service.stop() == 0, service.log()
