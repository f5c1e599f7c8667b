"""Test databases on a PostgreSQL server: the machine's (127.0.0.1:5432, user postgres,
trust auth) unless BATCH_TEST_POSTGRES_URL names another, such as
`postgresql://user:password@db.example:5433/postgres` (the database is the one
the run connects to to create its own; the driver part is ignored).

A test run migrates one template database, then copies it (CREATE DATABASE
... TEMPLATE, a file copy, far faster than migrating again) for each database
it needs. Names carry the test run's process id, so runs in parallel never
meet, and databases left behind by a run that was killed are dropped by the
next one.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count

import asyncpg
from sqlalchemy.engine import make_url

SERVER_URL_VARIABLE = "BATCH_TEST_POSTGRES_URL"
SERVER_URL = make_url(
    os.environ.get(SERVER_URL_VARIABLE) or "postgresql://postgres@127.0.0.1:5432/postgres"
)
HOST = SERVER_URL.host or "127.0.0.1"
PORT = SERVER_URL.port or 5432
USER = SERVER_URL.username or "postgres"
PASSWORD = SERVER_URL.password
ADMIN_DATABASE = SERVER_URL.database or "postgres"
PREFIX = "batchd_test_"
_OURS = re.compile(rf"{PREFIX}(\d+)_")


def url_of(database: str, host: str = HOST, port: int = PORT) -> str:
    """The service's URL of one of the server's databases (with the password, if any);
    `host` and `port` for one reached another way, such as through a proxy."""
    url = SERVER_URL.set(
        drivername="postgresql+asyncpg", host=host, port=port, username=USER, database=database
    )
    return url.render_as_string(hide_password=False)


async def connect(database: str = ADMIN_DATABASE) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, database=database, timeout=5
    )


@dataclass
class Server:
    """Creates and drops this test run's databases over one admin connection."""

    admin: asyncpg.Connection
    _numbers: count[int] = field(default_factory=count)

    async def create_database(self, template: str = "template0") -> str:
        name = f"{PREFIX}{os.getpid()}_{next(self._numbers)}"
        await self.admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    @asynccontextmanager
    async def template_copy(self, template: str) -> AsyncIterator[str]:
        """A copy of the template for as long as the context lasts."""
        name = await self.create_database(template=template)
        try:
            yield name
        finally:
            await self.drop_database(name)

    async def drop_database(self, name: str) -> None:
        # FORCE: a service process that outlived its test must not keep the database.
        await self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def drop_abandoned(self) -> None:
        """Drops databases of earlier test runs whose process is gone."""
        names = await self.admin.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", PREFIX + "%"
        )
        for row in names:
            match = _OURS.match(row["datname"])
            if match and not _alive(int(match.group(1))):
                await self.drop_database(row["datname"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def truncate_all(database: str) -> None:
    """Empties every table but Alembic's; gives up rather than wait on a lock a test left."""
    connection = await connect(database)
    try:
        await connection.execute("SET lock_timeout = '5s'")
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        names = ", ".join(f'"{row["tablename"]}"' for row in tables)
        await connection.execute(f"TRUNCATE {names}")
    finally:
        await connection.close()
