"""SQLite statements run on the event loop's own thread.

A B-tree probe or a small write takes microseconds; handing it to aiosqlite's
thread and back costs far more, and under load that thread waits for the GIL
(up to the interpreter's 5 ms switch interval) at every hop, which stalls the
engine's claims and result writes. SQLite allows one writer at a time anyway,
so running every write on the loop's thread, one transaction after another,
loses no concurrency.

Only waiting for another process's write lock could block the loop, so the
writer never lets SQLite wait: a busy BEGIN is retried with a backoff that sleeps.
Checkpoints (copying the WAL back into the database file, with an fsync)
run on a thread of their own about twice a second, instead of inside a
commit on the loop every thousand pages: fewer and larger checkpoints copy a
page written many times once, and the loop never waits for the disk.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import sqlite3
import time
from collections import namedtuple
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, CursorResult, Engine, Executable, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection

from service.waiting import Backoff

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
# As long as a write waits for another process before failing, like busy_timeout did.
BUSY_WAIT_SECONDS = 10.0
BUSY_RETRY_CAP = 0.05
CHECKPOINT_SECONDS = 0.5
# SQLite's own checkpoint on commit stays as a backstop (pages; its default is 1,000).
WAL_BACKSTOP_PAGES = 20_000


class InlineReader:
    """Primary-key lookups, on one connection in autocommit mode (it never pins a snapshot).

    Each query is compiled once, and run on the driver's own connection:
    going through SQLAlchemy's execution doubled what a lookup cost in a
    gRPC call. Column values still go through the columns' own result
    processors (JSON, booleans), so rows read the same either way.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: PoolProxiedConnection | None = None
        # Keyed by the query itself: statements hash by identity.
        self._prepared: dict[Select[Any], _Lookup] = {}

    def fetch_one(self, query: Select[Any], parameters: Mapping[str, Any]) -> Any:
        """The row's columns as attributes, or None. Raises sqlite3's own errors."""
        if self._connection is None:
            self._connection = self.engine.raw_connection()
        lookup = self._prepared.get(query)
        if lookup is None:
            lookup = self._prepared[query] = _Lookup.compile(query, self.engine.dialect)
        driver = self._connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        return lookup.run(driver, parameters)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self.engine.dispose()


def _record_type(columns: list[Any]) -> type[tuple[Any, ...]]:
    """Rows named as SQLAlchemy's are: by column name, and also by the attribute key of a
    column whose key differs (batches.metadata is the model's `labels`)."""
    record = namedtuple("Record", [column.name for column in columns])  # type: ignore[misc]
    aliases = {
        column.key: property(operator.itemgetter(index))
        for index, column in enumerate(columns)
        if column.key != column.name
    }
    if not aliases:
        return record
    return type("Record", (record,), {"__slots__": (), **aliases})


@dataclass(frozen=True)
class _Lookup:
    sql: str
    parameter_names: tuple[str, ...]
    # (column index, result processor) of the columns that have one (JSON, booleans).
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    record: type[tuple[Any, ...]]

    @classmethod
    def compile(cls, query: Select[Any], dialect: Dialect) -> _Lookup:
        compiled = query.compile(dialect=dialect)
        columns = list(query.selected_columns)
        return cls(
            str(compiled),
            tuple(compiled.positiontup or ()),
            tuple(
                (index, process)
                for index, column in enumerate(columns)
                if (process := column.type.dialect_impl(dialect).result_processor(dialect, None))
            ),
            _record_type(columns),
        )

    def run(self, connection: sqlite3.Connection, parameters: Mapping[str, Any]) -> Any:
        values = [parameters[name] for name in self.parameter_names]
        row = connection.execute(self.sql, values).fetchone()
        if row is None:
            return None
        values = list(row)
        for index, process in self.processors:
            if values[index] is not None:
                values[index] = process(values[index])
        return self.record._make(values)  # type: ignore[attr-defined]


class InlineConnection:
    """A write transaction's connection, with AsyncConnection's face."""

    def __init__(self, connection: Connection) -> None:
        self.sync_connection = connection

    @property
    def dialect(self) -> Dialect:
        return self.sync_connection.dialect

    async def exec_driver_sql(
        self, statement: str, parameters: Any = None
    ) -> CursorResult[*tuple[Any, ...]]:
        return self.sync_connection.exec_driver_sql(statement, parameters)

    async def execute(
        self, statement: Executable, parameters: Any = None
    ) -> CursorResult[*tuple[Any, ...]]:
        return self.sync_connection.execute(statement, parameters)

    async def run_sync(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return fn(self.sync_connection, *args, **kwargs)


class InlineWriter:
    """One connection; transactions take turns and start with BEGIN IMMEDIATE."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None
        self._turn = asyncio.Lock()
        self._checkpoints = Checkpoints(str(engine.url.database))

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[InlineConnection]:
        async with self._turn:
            if self._connection is None:
                self._connection = self.engine.connect()
            transaction = await self._begin(self._connection)
            try:
                yield InlineConnection(self._connection)
                transaction.commit()
            except BaseException:
                self._abandon(transaction)
                raise
        self._checkpoints.after_commit()

    def _abandon(self, transaction: Any) -> None:
        """Rolls back; a connection that cannot even do that is dropped, and the
        next transaction opens a new one."""
        assert self._connection is not None
        try:
            # Even an inactive transaction (its COMMIT failed, say on a full disk)
            # must be rolled back: until then SQLAlchemy refuses every later begin.
            transaction.rollback()
            driver = self._connection.connection.driver_connection
            idle = driver is not None and not driver.in_transaction
            if idle and not self._connection.in_transaction():
                return
        except SQLAlchemyError:
            pass
        log.warning("the SQLite write connection failed; opening a new one")
        self._connection.invalidate()
        self._connection.close()
        self._connection = None

    async def _begin(self, connection: Connection) -> Any:
        """Starts a transaction, waiting without blocking while another process writes."""
        backoff = Backoff(0.001, BUSY_RETRY_CAP)
        deadline = time.monotonic() + BUSY_WAIT_SECONDS
        while True:
            try:
                return connection.begin()
            except OperationalError as error:
                if not _busy(error) or time.monotonic() + backoff.delay > deadline:
                    raise
            await backoff.wait()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        await self._checkpoints.close()
        self.engine.dispose()


class Checkpoints:
    """Passive WAL checkpoints on a worker thread, at most one at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._last = time.monotonic()
        self._running: asyncio.Future[None] | None = None
        self._connection: sqlite3.Connection | None = None

    def after_commit(self) -> None:
        if self._running is not None and not self._running.done():
            return
        if time.monotonic() - self._last < CHECKPOINT_SECONDS:
            return
        self._last = time.monotonic()
        self._running = asyncio.get_running_loop().run_in_executor(None, self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            if self._connection is None:
                self._connection = sqlite3.connect(self.path, check_same_thread=False)
            # PASSIVE never waits for readers or writers; what it cannot copy
            # now is copied next time.
            self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as error:
            # Commits stand regardless; SQLite's own checkpoint is the backstop.
            log.warning("WAL checkpoint failed: %s", error)

    async def close(self) -> None:
        if self._running is not None:
            await self._running
        if self._connection is not None:
            self._connection.close()


def _busy(error: OperationalError) -> bool:
    code = getattr(error.orig, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
