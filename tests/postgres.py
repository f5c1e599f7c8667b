"""Test databases on the machine's PostgreSQL (127.0.0.1:5432, user postgres, trust auth).

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

HOST = "127.0.0.1"
PORT = 5432
USER = "postgres"
PREFIX = "batchd_test_"
_OURS = re.compile(rf"{PREFIX}(\d+)_")


def url_of(database: str) -> str:
    return f"postgresql+asyncpg://{USER}@{HOST}:{PORT}/{database}"


async def connect(database: str = "postgres") -> asyncpg.Connection:
    return await asyncpg.connect(host=HOST, port=PORT, user=USER, database=database, timeout=5)


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
