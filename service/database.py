"""Engines for the configured database, tuned per dialect.

SQLite has one writer at a time, and a deferred transaction that later writes
fails at once with SQLITE_BUSY, whatever busy_timeout says. So on SQLite every
write goes through a single connection that starts its transactions with
BEGIN IMMEDIATE, while reads use a pool of their own. WAL with
synchronous=NORMAL keeps every commit across a process crash (a power loss may
drop the last few): the README says so.
On PostgreSQL both roles share one pooled engine. Each connection is pinged
when taken from the pool, so connections the server dropped are replaced
instead of failing a call; a server that cannot be reached at all surfaces as
a DBAPIError like any other database failure, which callers answer with
UNAVAILABLE or retry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from service import models  # noqa: F401  (registers the tables)

# asyncpg waits 60 s by default for an unreachable server; calls should fail sooner.
CONNECT_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Database:
    reader: AsyncEngine
    writer: AsyncEngine

    @property
    def is_sqlite(self) -> bool:
        return self.writer.dialect.name == "sqlite"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction, committed on success."""
        async with self.writer.begin() as connection:
            yield connection

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.reader.connect() as connection:
            yield connection

    async def dispose(self) -> None:
        await self.reader.dispose()
        if self.writer is not self.reader:
            await self.writer.dispose()


def open_database(url: str) -> Database:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_async_engine(
            url,
            pool_size=10,
            max_overflow=10,
            pool_pre_ping=True,
            connect_args={"timeout": CONNECT_TIMEOUT_SECONDS},
        )
        event.listen(engine.sync_engine, "do_connect", _connect_reporting_network_errors)
        return Database(reader=engine, writer=engine)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    writer = create_async_engine(url, pool_size=1, max_overflow=0)
    reader = create_async_engine(url, pool_size=8, max_overflow=0)
    _configure_sqlite(writer, begin="BEGIN IMMEDIATE")
    _configure_sqlite(reader, begin=None)
    return Database(reader=reader, writer=writer)


def _connect_reporting_network_errors(
    dialect: Dialect, _record: Any, cargs: list[Any], cparams: dict[str, Any]
) -> Any:
    """asyncpg raises a refused or timed-out connection as a bare OSError, which
    SQLAlchemy passes through unwrapped; make it the driver's OperationalError."""
    dbapi = dialect.loaded_dbapi
    try:
        return dbapi.connect(*cargs, **cparams)
    except OSError as error:
        raise dbapi.OperationalError(f"cannot connect to the database: {error!r}") from error


def _configure_sqlite(engine: AsyncEngine, begin: str | None) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver: it would delay BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    if begin is not None:

        @event.listens_for(engine.sync_engine, "begin")
        def on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)
