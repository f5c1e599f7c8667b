"""What operators rely on: JSON logs with request ids, metrics, rate limits."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from batchd.v1 import batch_pb2
from service.migrate import upgrade_database
from tests.grpc_client import GET, bearer, operation, run_batch
from tests.processes import ROOT, TOKEN, free_port, gateway_env, service_env, serving
from tests.upstream import UpstreamLog


async def test_request_id_travels_to_the_upstream_and_into_json_logs(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    metrics_port = free_port()
    env = service_env(
        database_url,
        upstream_server[0],
        BATCH_LOG_LEVEL="INFO",
        BATCH_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}",
    )
    async with serving(env, tmp_path / "service.log") as (process, stub):
        created = await stub.CreateBatch(
            batch_pb2.CreateBatchRequest(
                batch=batch_pb2.Batch(batch_operations=[operation(GET, "/echo/a")])
            ),
            metadata=(*bearer(), ("x-request-id", "req-42")),
        )
        await run_batch(stub, [operation(GET, "/status/503")])
        await stub.CreateBatch(
            batch_pb2.CreateBatchRequest(
                batch=batch_pb2.Batch(batch_operations=[operation(GET, "/slow/1")])
            ),
            metadata=bearer(),
        )
        while upstream_server[1].in_flight == 0:
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as session:
            response = await session.get(f"http://127.0.0.1:{metrics_port}/metrics")
            exposition = await response.text()
    first = next(r for r in upstream_server[1].requests if r.path == "/echo/a")
    assert first.headers["X-Request-Id"] == "req-42"
    events = [json.loads(line) for line in process.log().splitlines() if line.startswith("{")]
    create_rpc = next(e for e in events if e.get("rpc") == "CreateBatch")
    assert create_rpc["request_id"] == "req-42" and create_rpc["code"] == "OK"
    outcome = next(e for e in events if e.get("operation_id") == first.headers["Idempotency-Key"])
    assert outcome["request_id"] == "req-42" and outcome["status"] == "completed"
    assert created.batch.id == outcome["batch_id"]
    assert TOKEN not in process.log()
    assert 'batchd_rpc_requests_total{code="OK",method="CreateBatch"}' in exposition
    assert 'batchd_operations_executed_total{status="completed"}' in exposition
    assert "batchd_upstream_duration_seconds_bucket" in exposition
    assert "\nbatchd_operations_in_flight 1.0\n" in exposition


async def test_creates_beyond_the_tenant_rate_are_refused_with_a_retry_delay(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    env = service_env(
        database_url, upstream_server[0], BATCH_CREATE_RATE="0.01", BATCH_CREATE_BURST="2"
    )
    request = batch_pb2.CreateBatchRequest(
        batch=batch_pb2.Batch(batch_operations=[operation(GET, "/echo/a")])
    )
    async with serving(env, tmp_path / "service.log") as (_, stub):
        for _ in range(2):
            await stub.CreateBatch(request, metadata=bearer())
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.CreateBatch(request, metadata=bearer())
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(error.value)  # type: ignore[arg-type]
    assert status is not None
    retry_info = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(retry_info) for detail in status.details)
    assert 0 < retry_info.retry_delay.ToMilliseconds() <= 100_000


async def test_a_response_limit_no_reply_could_carry_stops_the_start(tmp_path: Path) -> None:
    """Above 2 MiB, a stored response could leave its operation unreadable (16 MiB replies)."""
    env = service_env(
        f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}",
        "http://127.0.0.1:9",
        BATCH_MAX_RESPONSE_BYTES=str(3 * 1024 * 1024),
    )
    code, lines = await _start_failing(env)
    assert code == 2
    [line] = lines
    assert line.startswith("batchd: BATCH_MAX_RESPONSE_BYTES must be between 1 and 2097152")


async def _start_failing(env: dict[str, str], module: str = "service") -> tuple[int, list[str]]:
    """Runs a process that must refuse to start: its exit status and stderr lines."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode().splitlines()


@pytest.mark.parametrize(
    "upstream_url",
    [
        "http://[::1",
        "http://[zz]/",
        "ftp://x",
        "http://",
        "http://h:99999",
        "http://h:0",
        "http://a b/",
        "http://%41/",
        "https://user@h/",
        "http://h/?q=1",
    ],
)
async def test_a_malformed_upstream_url_is_one_line_and_a_failed_start(
    upstream_url: str, tmp_path: Path
) -> None:
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}", upstream_url)
    code, lines = await _start_failing(env)
    assert code == 2
    [line] = lines
    assert line.startswith("batchd: BATCH_UPSTREAM_URL ")


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """The path bind-mounted read-only: root ignores file modes, not mount flags."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path), str(path)], check=True)
        yield
    finally:
        # Lazily: a process still holding the file must not leave the mount behind.
        subprocess.run(["umount", "-l", str(path)], check=True)


async def test_an_unwritable_sqlite_file_is_one_line_and_a_failed_start(tmp_path: Path) -> None:
    database = tmp_path / "batchd.db"
    await upgrade_database(f"sqlite+aiosqlite:///{database}")
    env = service_env(f"sqlite+aiosqlite:///{database}", "http://127.0.0.1:9")
    with read_only(database):
        code, lines = await _start_failing(env)
    assert code == 2
    [line] = lines
    assert line.startswith("batchd: database: "), line


async def test_a_sqlite_file_where_none_can_be_made_is_one_line_and_a_failed_start() -> None:
    env = service_env("sqlite+aiosqlite:////proc/self/batchd.db", "http://127.0.0.1:9")
    code, lines = await _start_failing(env)
    assert code == 2
    [line] = lines
    assert line.startswith("batchd: database: "), line


@pytest.mark.parametrize(
    ("url", "form"),
    [
        ("postgresql://postgres@127.0.0.1/batchd", "postgresql+asyncpg://user@host/db"),
        ("postgres://u:hunter2@db.example/batchd", "postgresql+asyncpg://user@host/db"),
        ("postgresql+psycopg2://u:hunter2@127.0.0.1/batchd", "postgresql+asyncpg://user@host/db"),
        ("sqlite:///var/batchd.db", "sqlite+aiosqlite:///FILE"),
        ("mysql+aiomysql://u:hunter2@h/db", "postgresql+asyncpg://user@host/db"),
        ("not a url", "postgresql+asyncpg://user@host/db"),
    ],
)
@pytest.mark.parametrize("module", ["service", "service.migrate"])
async def test_a_database_url_without_its_async_driver_is_one_line_naming_the_form(
    url: str, form: str, module: str
) -> None:
    env = service_env(url, "http://127.0.0.1:9")
    code, lines = await _start_failing(env, module)
    assert code == 2
    [line] = lines
    assert line.startswith("batchd: BATCH_DATABASE_URL"), line
    assert form in line, line
    assert "hunter2" not in line  # the URL's password is never echoed


async def test_a_taken_grpc_port_is_one_line_naming_its_variable(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = service_env(
            f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}",
            "http://127.0.0.1:9",
            BATCH_GRPC_ADDRESS=address,
        )
        code, lines = await _start_failing(env)
    assert code == 1
    assert lines == [
        f"batchd: cannot listen on BATCH_GRPC_ADDRESS={address}: Address already in use"
    ]


async def test_a_taken_http_port_is_one_line_naming_its_variable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = gateway_env(f"127.0.0.1:{free_port()}", BATCH_HTTP_ADDRESS=address)
        code, lines = await _start_failing(env, "gateway")
    assert code == 1
    [line] = lines
    assert line.startswith(f"batchd: cannot listen on BATCH_HTTP_ADDRESS={address}: "), line
    assert "in use" in line, line
