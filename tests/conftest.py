"""Shared fixtures: a real upstream on loopback, the real service process, a gRPC client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from aiohttp import web

from batchd.v1 import batch_pb2_grpc
from tests import upstream
from tests.processes import TOKEN, Process, service_env, start_service


@pytest.fixture
async def upstream_server() -> AsyncIterator[tuple[str, upstream.UpstreamLog]]:
    app = upstream.make_app()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", app[upstream.LOG_KEY]
    await runner.cleanup()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}"


@pytest.fixture
async def service(
    database_url: str, upstream_server: tuple[str, upstream.UpstreamLog], tmp_path: Path
) -> AsyncIterator[tuple[Process, dict[str, str]]]:
    env = service_env(database_url, upstream_server[0])
    process = await start_service(env, tmp_path / "service.log")
    yield process, env
    await process.stop()


def bearer(token: str = TOKEN) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
async def stub(
    service: tuple[Process, dict[str, str]],
) -> AsyncIterator[batch_pb2_grpc.BatchServiceStub]:
    async with grpc.aio.insecure_channel(service[1]["BATCH_GRPC_ADDRESS"]) as channel:
        yield batch_pb2_grpc.BatchServiceStub(channel)
