"""A running service whose PostgreSQL connections are cut: it recovers, or says UNAVAILABLE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError

from batchd.v1 import batch_pb2, batch_pb2_grpc
from service.database import open_database, statement_refused
from tests import postgres
from tests.grpc_client import GET, bearer, operation, run_batch
from tests.processes import Process, service_env, serving
from tests.upstream import UpstreamLog

# Bounds every call: a hang fails the test as DEADLINE_EXCEEDED instead of stalling it.
CALL_TIMEOUT = 30


@pytest.fixture
async def running(
    private_postgres: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> AsyncIterator[tuple[Process, batch_pb2_grpc.BatchServiceStub]]:
    env = service_env(postgres.url_of(private_postgres), upstream_server[0])
    async with serving(env, tmp_path / "service.log") as running_service:
        yield running_service


async def cut_connections(server: postgres.Server, database: str) -> int:
    terminated: int = await server.admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
        database,
    )
    return terminated


async def get_batch(
    stub: batch_pb2_grpc.BatchServiceStub, batch_id: str
) -> batch_pb2.GetBatchResponse:
    reply: batch_pb2.GetBatchResponse = await stub.GetBatch(
        batch_pb2.GetBatchRequest(id=batch_id), metadata=bearer(), timeout=CALL_TIMEOUT
    )
    return reply


async def test_calls_succeed_after_the_server_terminated_every_connection(
    running: tuple[Process, batch_pb2_grpc.BatchServiceStub],
    postgres_server: postgres.Server,
    private_postgres: str,
) -> None:
    process, stub = running
    done = await run_batch(stub, [operation(GET, "/echo/one")])
    assert await cut_connections(postgres_server, private_postgres) > 0

    # The ping finds each pooled connection dead and opens a new one.
    reply = await get_batch(stub, done.id)
    assert reply.batch.status == batch_pb2.BATCH_STATUS_COMPLETED
    again = await run_batch(stub, [operation(GET, "/echo/two")])
    assert again.batch_operations[0].response_status == 200
    assert "Traceback" not in process.log()


async def test_calls_answer_unavailable_while_the_database_refuses_connections(
    running: tuple[Process, batch_pb2_grpc.BatchServiceStub],
    postgres_server: postgres.Server,
    private_postgres: str,
) -> None:
    process, stub = running
    done = await run_batch(stub, [operation(GET, "/echo/one")])
    await postgres_server.admin.execute(
        f'ALTER DATABASE "{private_postgres}" WITH ALLOW_CONNECTIONS false'
    )
    try:
        await cut_connections(postgres_server, private_postgres)
        with pytest.raises(grpc.aio.AioRpcError) as refused_read:
            await get_batch(stub, done.id)
        assert refused_read.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as refused_write:
            await stub.CreateBatch(
                batch_pb2.CreateBatchRequest(
                    batch=batch_pb2.Batch(batch_operations=[operation(GET, "/echo/lost")])
                ),
                metadata=bearer(),
                timeout=CALL_TIMEOUT,
            )
        assert refused_write.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await postgres_server.admin.execute(
            f'ALTER DATABASE "{private_postgres}" WITH ALLOW_CONNECTIONS true'
        )

    reply = await get_batch(stub, done.id)
    assert reply.batch.status == batch_pb2.BATCH_STATUS_COMPLETED
    # The engine kept retrying through the outage and still runs new work.
    again = await run_batch(stub, [operation(GET, "/echo/two")])
    assert again.batch_operations[0].response_status == 200
    assert "Traceback" not in process.log()


async def test_data_postgresql_refuses_is_the_statement_s_fault_not_an_outage(
    postgres_url: str,
) -> None:
    # asyncpg's data errors arrive as plain DBAPIErrors (the tests above show a
    # cut connection still answers UNAVAILABLE).
    database = open_database(postgres_url)
    refused = []
    for sql in ("SELECT 'a\\u0000'::jsonb", "SELECT 1 / 0"):
        with pytest.raises(StatementError) as raised:
            async with database.read() as connection:
                await connection.execute(text(sql))
        refused.append(statement_refused(raised.value))
    await database.dispose()
    assert refused == [True, True]
