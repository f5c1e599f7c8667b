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

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from service import models  # noqa: F401  (registers the tables)

# asyncpg waits 60 s by default for an unreachable server; calls should fail sooner.
CONNECT_TIMEOUT_SECONDS = 10


class InlineReader:
    """SQLite primary-key lookups run on the event loop's own thread.

    A B-tree probe takes microseconds; a hop to aiosqlite's thread and back
    takes far longer. One connection is kept (in autocommit, so it never pins
    a snapshot) because the loop's thread runs one lookup at a time anyway.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None

    def fetch_one(self, query: Select[Any], parameters: Mapping[str, Any]) -> Row[Any] | None:
        if self._connection is None:
            self._connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        row: Row[Any] | None = self._connection.execute(query, parameters).first()
        return row

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self.engine.dispose()


@dataclass(frozen=True)
class Database:
    reader: AsyncEngine
    writer: AsyncEngine
    inline_reader: InlineReader | None = None

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

    async def fetch_one(self, query: Select[Any], parameters: Mapping[str, Any]) -> Row[Any] | None:
        """The row of a primary-key lookup (a prepared statement), or None."""
        if self.inline_reader is not None:
            try:
                return self.inline_reader.fetch_one(query, parameters)
            except OperationalError:
                pass  # busy for a moment (a checkpoint): take the async path
        async with self.read() as connection:
            return (await connection.execute(query, parameters)).first()  # type: ignore[no-any-return]

    async def dispose(self) -> None:
        if self.inline_reader is not None:
            self.inline_reader.close()
        await self.reader.dispose()
        if self.writer is not self.reader:
            await self.writer.dispose()


def statement_refused(error: StatementError) -> bool:
    """The database rejected the data of a statement, as opposed to being unreachable.

    Connection failures come as many DBAPI error classes (a database that
    refuses connections can raise a ProgrammingError on PostgreSQL), so only
    data and integrity errors count as the statement's own fault.
    """
    return isinstance(error, DataError | IntegrityError) or not isinstance(error, DBAPIError)


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
    # Readers run in autocommit mode and never hold a transaction, so returning
    # a connection to the pool needs no rollback (a round trip to its thread).
    reader = create_async_engine(url, pool_size=8, max_overflow=0, pool_reset_on_return=None)
    inline_reader = create_engine(
        parsed.set(drivername="sqlite"), pool_size=2, max_overflow=0, pool_reset_on_return=None
    )
    _configure_sqlite(writer.sync_engine, begin="BEGIN IMMEDIATE")
    _configure_sqlite(reader.sync_engine, begin=None)
    # The inline reader runs on the event loop: never wait long for a lock.
    _configure_sqlite(inline_reader, begin=None, busy_timeout_ms=20)
    return Database(reader=reader, writer=writer, inline_reader=InlineReader(inline_reader))


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


def _configure_sqlite(engine: Engine, begin: str | None, busy_timeout_ms: int = 10_000) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver: it would delay BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    if begin is not None:

        @event.listens_for(engine, "begin")
        def on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)
