"""The Alembic revisions against the models, on empty SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from service.database import Database, open_database
from service.migrate import MIGRATION_LOCK_KEY, alembic_config, upgrade
from tests import postgres
from tests.processes import ROOT, Process, free_port, service_env, start_service

T = TypeVar("T")
TABLES = {
    "alembic_version",
    "batches",
    "batch_operations",
    "create_requests",
    "rate_buckets",
    "upstream_pauses",
    "webhook_endpoints",
    "webhook_deliveries",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


@pytest.fixture
async def empty_postgres_url(postgres_server: postgres.Server) -> AsyncIterator[str]:
    name = await postgres_server.create_database()
    yield postgres.url_of(name)
    await postgres_server.drop_database(name)


@pytest.fixture
async def database(empty_database_url: str) -> AsyncIterator[Database]:
    opened = open_database(empty_database_url)
    yield opened
    await opened.dispose()


async def on_connection(database: Database, action: Callable[[Connection], T]) -> T:
    async with database.write() as connection:
        return await connection.run_sync(action)


def schema_diff(connection: Connection) -> list[object]:
    """What autogenerate would write in a new revision: nothing, if models and revisions agree."""
    diff: list[object] = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    return diff


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def current_heads(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


def downgrade_to_base(connection: Connection) -> None:
    command.downgrade(alembic_config(connection), "base")


async def test_latest_revision_creates_exactly_the_models(database: Database) -> None:
    assert await on_connection(database, table_names) == set()
    await upgrade(database)
    assert await on_connection(database, table_names) == TABLES
    latest = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    assert await on_connection(database, current_heads) == latest
    assert await on_connection(database, schema_diff) == []


async def test_downgrade_to_base_and_upgrade_again(database: Database) -> None:
    await upgrade(database)
    await on_connection(database, downgrade_to_base)
    assert await on_connection(database, table_names) == {"alembic_version"}
    await upgrade(database)
    assert await on_connection(database, schema_diff) == []


async def test_upgrading_twice_changes_nothing(database: Database) -> None:
    await upgrade(database)
    await upgrade(database)
    assert await on_connection(database, schema_diff) == []


async def run_migrate_command(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.migrate",
        *args,
        cwd=ROOT,
        env={key: value for key, value in os.environ.items() if key != "BATCH_DATABASE_URL"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_migrate_command_upgrades_the_database(database: Database) -> None:
    url = database.engine.url.render_as_string(hide_password=False)
    code, output = await run_migrate_command("--database-url", url)
    assert code == 0, output
    assert "Running upgrade  -> 0001" in output
    assert await on_connection(database, table_names) == TABLES


async def test_replicas_upgrading_at_once_take_turns(empty_postgres_url: str) -> None:
    name = empty_postgres_url.rsplit("/", 1)[1]
    holder = await postgres.connect(name)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        runs = asyncio.gather(
            *(run_migrate_command("--database-url", empty_postgres_url) for _ in range(2))
        )
        await wait_for_lock_waiters(holder, 2)
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        for code, output in await runs:
            assert code == 0, output
    finally:
        await holder.close()
    database = open_database(empty_postgres_url)
    try:
        assert await on_connection(database, schema_diff) == []
    finally:
        await database.dispose()


async def wait_for_lock_waiters(connection: asyncpg.Connection, expected: int) -> None:
    query = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    for _ in range(600):
        if await connection.fetchval(query) == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{expected} migrations never waited on the migration lock")


async def test_migrate_command_reports_an_unreachable_database_in_one_line() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    code, output = await run_migrate_command("--database-url", url)
    assert code == 2
    assert output.startswith("batchd: database: OperationalError: cannot connect")
    assert "Traceback" not in output


async def test_service_on_postgres_refuses_an_outdated_schema_unless_told_to_migrate(
    empty_postgres_url: str, upstream_server: tuple[str, Any], tmp_path: Path
) -> None:
    env = service_env(empty_postgres_url, upstream_server[0])
    refused = Process("service", env, tmp_path / "refused.log")
    await refused.start()
    assert refused.process is not None
    assert await asyncio.wait_for(refused.process.wait(), 60) == 2
    await refused.stop()
    assert "schema is at revision none (empty database)" in refused.log()
    assert "python -m service.migrate" in refused.log()
    assert "Traceback" not in refused.log()

    migrating = await start_service(
        {**env, "BATCH_MIGRATE_ON_START": "1"}, tmp_path / "migrating.log"
    )
    await migrating.stop()
    database = open_database(empty_postgres_url)
    try:
        assert await on_connection(database, schema_diff) == []
    finally:
        await database.dispose()
