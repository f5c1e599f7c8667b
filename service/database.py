"""Engines for the configured database, tuned per dialect.

SQLite has one writer at a time, and a deferred transaction that later writes
fails at once with SQLITE_BUSY, whatever busy_timeout says. So on SQLite every
write goes through a single connection on the event loop's thread that starts
its transactions with BEGIN IMMEDIATE (see sqlite_inline.py); primary-key
lookups run there too, and other reads use aiosqlite's pool. WAL with
synchronous=NORMAL keeps every commit across a process crash (a power loss may
drop the last few): the README says so.
On PostgreSQL the calls' reads and writes share one pooled engine. Each of its
connections is pinged when taken from the pool, so connections the server
dropped are replaced instead of failing a call. The ping is one plain
statement: SQLAlchemy's own wraps it in BEGIN and ROLLBACK, three round trips
on every checkout. The execution engine has a pool of its own, without the
ping (`for_engine`): it retries every step whole when the database is away,
so a dropped connection costs it one retry rather than a round trip on every
claim, mark and result group. A server that cannot be reached at all
surfaces as a DBAPIError like any other database failure, which callers
answer with UNAVAILABLE or retry.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, Protocol

from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Executable,
    Select,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    StatementError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from batchd.config import ConfigError
from service import models  # noqa: F401  (registers the tables)
from service.sqlite_inline import WAL_BACKSTOP_PAGES, InlineReader, InlineWriter, P, T

# A statement's error names its parameters unless told not to, and they are
# operations' bodies, responses and sealed credentials: never in a log line.
HIDE_PARAMETERS = True

# Rewrites a row in place: on SQLite it appends a page to the WAL, as any write does.
_PROBE_WRITE = text("UPDATE alembic_version SET version_num = version_num")
# asyncpg waits 60 s by default for an unreachable server; calls should fail sooner.
CONNECT_TIMEOUT_SECONDS = 10
# The URL form of each database batchd runs on, with the async driver it installs:
# without it SQLAlchemy picks a driver that is not installed or that blocks.
URL_FORMS = {
    "postgresql": "postgresql+asyncpg://user@host/db",
    "sqlite": "sqlite+aiosqlite:///FILE",
}
ANY_URL_FORM = " or ".join(URL_FORMS.values())


class DbConnection(Protocol):
    """What queries need of a connection: an AsyncConnection, or SQLite's inline writer."""

    @property
    def dialect(self) -> Dialect: ...

    async def exec_driver_sql(
        self, statement: str, parameters: Any = None
    ) -> CursorResult[*tuple[Any, ...]]: ...

    async def execute(
        self, statement: Executable, parameters: Any = None
    ) -> CursorResult[*tuple[Any, ...]]: ...

    async def run_sync(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T: ...


@dataclass(frozen=True)
class Database:
    # Every read; on PostgreSQL, every write too.
    engine: AsyncEngine
    # SQLite only: lookups and writes on the event loop's thread.
    inline_reader: InlineReader | None = None
    inline_writer: InlineWriter | None = None
    # PostgreSQL: the same pool, its reads in autocommit mode.
    reader: AsyncEngine | None = None
    # PostgreSQL: the execution engine's view, on a pool of its own.
    engine_side: Database | None = None

    def for_engine(self) -> Database:
        """What the execution engine uses: on PostgreSQL, connections that are not
        pinged at checkout (its steps retry when the database is away)."""
        return self.engine_side or self

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[DbConnection]:
        """One write transaction, committed on success."""
        if self.inline_writer is not None:
            async with self.inline_writer.begin() as inline:
                yield inline
            return
        async with self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def write_statement(self) -> AsyncIterator[DbConnection]:
        """For a write that PostgreSQL runs as one statement (a function call, atomic
        on its own): in autocommit mode it costs no BEGIN and COMMIT round trips.
        SQLite runs it as write() does."""
        if self.reader is None:
            async with self.write() as connection:
                yield connection
            return
        async with self.reader.connect() as connection:
            yield connection

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with (self.reader or self.engine).connect() as connection:
            yield connection

    async def fetch_one(self, query: Select[Any], parameters: Mapping[str, Any]) -> Any:
        """The row of a primary-key lookup (a prepared statement), its columns as
        attributes, or None."""
        if self.inline_reader is not None:
            try:
                return self.inline_reader.fetch_one(query, parameters)
            except sqlite3.Error:
                # Busy for a moment, or worse: the async path retries, and its
                # errors are SQLAlchemy's, which callers know how to answer.
                pass
        async with self.read() as connection:
            return (await connection.execute(query, parameters)).first()

    async def probe_write(self) -> None:
        """A real write that changes nothing: raises what a write would raise now
        (the database unreachable, its disk full or read-only, the writer wedged)."""
        async with self.write() as connection:
            await connection.execute(_PROBE_WRITE)

    async def dispose(self) -> None:
        if self.inline_reader is not None:
            self.inline_reader.close()
        if self.inline_writer is not None:
            await self.inline_writer.close()
        if self.engine_side is not None:
            await self.engine_side.dispose()
        await self.engine.dispose()


def statement_refused(error: StatementError) -> bool:
    """The database rejected the data of a statement, as opposed to being unreachable.

    Connection failures come as many DBAPI error classes (a database that
    refuses connections can raise a ProgrammingError on PostgreSQL), so only
    data and integrity errors count as the statement's own fault. SQLAlchemy's
    asyncpg adapter raises PostgreSQL's data errors as plain DBAPIErrors, so
    their SQLSTATE class (22 data exception, 23 integrity) says it instead.
    """
    if isinstance(error, DataError | IntegrityError) or not isinstance(error, DBAPIError):
        return True
    sqlstate = getattr(error.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in ("22", "23")


def parse_database_url(url: str) -> URL:
    """The URL, or a one-line ConfigError naming the forms batchd takes (never the URL
    itself: it may hold a password)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"BATCH_DATABASE_URL is not a database URL: use {ANY_URL_FORM}") from None
    form = URL_FORMS.get(parsed.get_backend_name())
    if form is None:
        raise ConfigError(f"BATCH_DATABASE_URL: batchd runs on {ANY_URL_FORM}")
    if not form.startswith(f"{parsed.drivername}://"):
        raise ConfigError(
            f"BATCH_DATABASE_URL={parsed.drivername}://... names no async driver: use {form}"
        )
    return parsed


def open_database(url: str) -> Database:
    parsed = parse_database_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine_side = _postgres_database(url, pool_size=5, pinged=False)
        return _postgres_database(url, pool_size=10, pinged=True, engine_side=engine_side)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # Readers run in autocommit mode and never hold a transaction, so returning
    # a connection to the pool needs no rollback (a round trip to its thread).
    engine = create_async_engine(
        url,
        hide_parameters=HIDE_PARAMETERS,
        pool_size=8,
        max_overflow=0,
        pool_reset_on_return=None,
    )
    sync_url = parsed.set(drivername="sqlite")
    inline_reader = create_engine(
        sync_url,
        hide_parameters=HIDE_PARAMETERS,
        pool_size=1,
        max_overflow=0,
        pool_reset_on_return=None,
    )
    inline_writer = create_engine(
        sync_url, hide_parameters=HIDE_PARAMETERS, pool_size=1, max_overflow=0
    )
    _configure_sqlite(engine.sync_engine, begin=None)
    # The inline connections run on the event loop: they must not wait for locks.
    _configure_sqlite(inline_reader, begin=None, busy_timeout_ms=20)
    _configure_sqlite(
        inline_writer,
        begin="BEGIN IMMEDIATE",
        busy_timeout_ms=0,
        wal_autocheckpoint=WAL_BACKSTOP_PAGES,
    )
    return Database(
        engine,
        inline_reader=InlineReader(inline_reader),
        inline_writer=InlineWriter(inline_writer),
    )


def _postgres_database(
    url: str, pool_size: int, pinged: bool, engine_side: Database | None = None
) -> Database:
    engine = create_async_engine(
        url,
        hide_parameters=HIDE_PARAMETERS,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"timeout": CONNECT_TIMEOUT_SECONDS},
    )
    event.listen(engine.sync_engine, "do_connect", _connect_reporting_network_errors)
    if pinged:
        event.listen(engine.sync_engine, "checkout", _ping)
    # A read in a transaction of its own costs a BEGIN and a ROLLBACK, two
    # round trips, for nothing: under READ COMMITTED each statement has its
    # own snapshot anyway, and no read locks rows.
    reader = engine.execution_options(isolation_level="AUTOCOMMIT")
    return Database(engine, reader=reader, engine_side=engine_side)


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


def _ping(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection that is dead is swapped for a new one: the pool
    answers DisconnectionError by connecting again."""
    try:
        dbapi_connection.run_async(_select_one)
    except Exception as error:
        raise DisconnectionError("a pooled connection is dead") from error


async def _select_one(driver_connection: Any) -> None:
    await driver_connection.execute("SELECT 1")


def _configure_sqlite(
    engine: Engine,
    begin: str | None,
    busy_timeout_ms: int = 10_000,
    wal_autocheckpoint: int = 1000,
) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver: it would delay BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA wal_autocheckpoint={wal_autocheckpoint}")
        cursor.close()

    if begin is not None:

        @event.listens_for(engine, "begin")
        def on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)
