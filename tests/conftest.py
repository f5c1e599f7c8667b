"""Shared fixtures: a real upstream on loopback, the real service process, a gRPC client.

Every test that uses `database_url` runs twice: on a SQLite file and on the
machine's PostgreSQL. Without PostgreSQL the second run is skipped, saying why;
under CI=true it fails instead, so CI can never pass without it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import grpc
import pytest

from batchd.v1 import batch_pb2_grpc
from service.migrate import upgrade_database
from tests import postgres, upstream
from tests.processes import (
    API_TOKENS,
    TOKEN,
    Process,
    gateway_env,
    service_env,
    start_gateway,
    start_service,
)
from tests.shared_stack import SHARED_API_TOKENS, SharedStack, fresh_token
from tests.upstream import running_upstream


@pytest.fixture
async def upstream_server() -> AsyncIterator[tuple[str, upstream.UpstreamLog]]:
    async with running_upstream() as served:
        yield served


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: on PostgreSQL at the latest revision; on SQLite a file the
    service creates and upgrades at start-up (tests that open it call `upgrade`)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="session")
async def postgres_server() -> AsyncIterator[postgres.Server]:
    try:
        admin = await postgres.connect()
    except (OSError, asyncpg.PostgresError) as error:
        reason = (
            f"PostgreSQL does not answer at {postgres.HOST}:{postgres.PORT} as user "
            f"{postgres.USER}: {error!r} (set {postgres.SERVER_URL_VARIABLE} for another server)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL is required)")
        pytest.skip(reason)
    server = postgres.Server(admin)
    await server.drop_abandoned()
    yield server
    await admin.close()


@pytest.fixture(scope="session")
async def postgres_template(postgres_server: postgres.Server) -> AsyncIterator[str]:
    """A database migrated once to the latest revision, copied for each test that needs one."""
    name = await postgres_server.create_database()
    await upgrade_database(postgres.url_of(name))
    yield name
    await postgres_server.drop_database(name)


@pytest.fixture(scope="session")
async def shared_postgres(
    postgres_server: postgres.Server, postgres_template: str
) -> AsyncIterator[str]:
    async with postgres_server.template_copy(postgres_template) as name:
        yield name


@pytest.fixture
async def postgres_url(shared_postgres: str) -> AsyncIterator[str]:
    """The run's shared PostgreSQL database, emptied after each test: much faster than a copy."""
    yield postgres.url_of(shared_postgres)
    await postgres.truncate_all(shared_postgres)


@pytest.fixture
async def private_postgres(
    postgres_server: postgres.Server, postgres_template: str
) -> AsyncIterator[str]:
    """A copy of the template for a test that changes the database itself; dropped after."""
    async with postgres_server.template_copy(postgres_template) as name:
        yield name


@pytest.fixture
async def service(
    database_url: str, upstream_server: tuple[str, upstream.UpstreamLog], tmp_path: Path
) -> AsyncIterator[tuple[Process, dict[str, str]]]:
    env = service_env(database_url, upstream_server[0])
    process = await start_service(env, tmp_path / "service.log")
    yield process, env
    await process.stop()


@pytest.fixture
async def stub(
    service: tuple[Process, dict[str, str]],
) -> AsyncIterator[batch_pb2_grpc.BatchServiceStub]:
    async with grpc.aio.insecure_channel(service[1]["BATCH_GRPC_ADDRESS"]) as channel:
        yield batch_pb2_grpc.BatchServiceStub(channel)


@pytest.fixture
async def gateway(
    service: tuple[Process, dict[str, str]], tmp_path: Path
) -> AsyncIterator[tuple[Process, str]]:
    """The REST gateway process in front of `service`, and its base URL."""
    env = gateway_env(service[1]["BATCH_GRPC_ADDRESS"])
    process, base_url = await start_gateway(env, tmp_path / "gateway.log")
    yield process, base_url
    await process.stop()


@pytest.fixture
async def http(gateway: tuple[Process, str]) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the gateway as tenant A; requests take paths such as `/v1/batches`."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(base_url=gateway[1], headers=headers) as session:
        yield session


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A module's own database, on each of the two databases."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('shared') / 'batchd.db'}"
    url: str = request.getfixturevalue("module_postgres_url")
    return url


@pytest.fixture(scope="module")
async def module_postgres_url(
    postgres_server: postgres.Server, postgres_template: str
) -> AsyncIterator[str]:
    async with postgres_server.template_copy(postgres_template) as name:
        yield postgres.url_of(name)


@pytest.fixture(scope="module")
async def shared_stack(
    shared_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SharedStack]:
    """A service and gateway shared by a module's tests."""
    directory = tmp_path_factory.mktemp("shared")
    async with running_upstream() as (upstream_url, _):
        env = service_env(
            shared_database_url,
            upstream_url,
            BATCH_API_TOKENS=f"{API_TOKENS},{SHARED_API_TOKENS}",
        )
        service = await start_service(env, directory / "service.log")
        gateway_process, base_url = await start_gateway(
            gateway_env(env["BATCH_GRPC_ADDRESS"]), directory / "gateway.log"
        )
        yield SharedStack(base_url, env["BATCH_GRPC_ADDRESS"])
        await gateway_process.stop()
        await service.stop()


@pytest.fixture
async def api(shared_stack: SharedStack) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the shared gateway, authenticated as a tenant of its own."""
    headers = {"Authorization": f"Bearer {fresh_token()}"}
    async with aiohttp.ClientSession(base_url=shared_stack.base_url, headers=headers) as session:
        yield session


@pytest.fixture
def other_auth(shared_stack: SharedStack) -> dict[str, str]:
    """Headers of a second fresh tenant on the shared gateway."""
    return {"Authorization": f"Bearer {fresh_token()}"}


@pytest.fixture
async def shared_stub(
    shared_stack: SharedStack,
) -> AsyncIterator[batch_pb2_grpc.BatchServiceStub]:
    async with grpc.aio.insecure_channel(shared_stack.grpc_target) as channel:
        yield batch_pb2_grpc.BatchServiceStub(channel)
