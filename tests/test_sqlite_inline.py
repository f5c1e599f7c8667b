"""SQLite writes on the event loop's thread: they never block the loop, and the WAL is
checkpointed on a thread of its own."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from service.database import open_database
from service.sqlite_inline import CHECKPOINT_SECONDS


async def test_a_write_waits_for_another_process_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "busy.db"
    database = open_database(f"sqlite+aiosqlite:///{path}")
    async with database.write() as connection:
        await connection.execute(text("CREATE TABLE t (x INTEGER)"))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def write() -> None:
        async with database.write() as connection:
            await connection.execute(text("INSERT INTO t VALUES (1)"))

    ticking = asyncio.create_task(tick())
    writing = asyncio.create_task(write())
    await asyncio.sleep(0.3)
    assert not writing.done()
    other.execute("COMMIT")
    await asyncio.wait_for(writing, 5)
    ticking.cancel()
    # The loop kept turning while the write waited for the lock.
    assert ticks >= 10
    assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)
    other.close()
    await database.dispose()


async def test_commits_are_checkpointed_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    database = open_database(f"sqlite+aiosqlite:///{path}")
    async with database.write() as connection:
        await connection.execute(text("CREATE TABLE t (x INTEGER)"))
        await connection.execute(text("INSERT INTO t VALUES (1), (2), (3)"))
    await asyncio.sleep(CHECKPOINT_SECONDS + 0.1)
    async with database.write() as connection:  # due for a checkpoint now
        await connection.execute(text("INSERT INTO t VALUES (4)"))
    try:
        # While every connection stays open (closing the last one would
        # checkpoint too), the rows reach the database file itself.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while rows_in_file(path) < 3:
            assert loop.time() < deadline, "the WAL was never checkpointed"
            await asyncio.sleep(0.05)
    finally:
        await database.dispose()


def rows_in_file(path: Path) -> int:
    """Rows of t in the database file alone: immutable=1 ignores the WAL."""
    file_only = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(file_only.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.DatabaseError:
        # Not even the table is in the file yet, or a checkpoint is writing it
        # right now: immutable=1 takes no lock, so it may read a half-written page.
        return 0
    finally:
        file_only.close()


async def test_a_failed_transaction_is_rolled_back_and_the_next_one_commits(
    tmp_path: Path,
) -> None:
    database = open_database(f"sqlite+aiosqlite:///{tmp_path / 'rollback.db'}")
    async with database.write() as connection:
        await connection.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
        await connection.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(IntegrityError):
        async with database.write() as connection:
            await connection.execute(text("INSERT INTO t VALUES (2)"))
            await connection.execute(text("INSERT INTO t VALUES (1)"))
    async with database.write() as connection:
        await connection.execute(text("INSERT INTO t VALUES (3)"))
    async with database.read() as reading:
        rows = (await reading.execute(text("SELECT x FROM t ORDER BY x"))).scalars().all()
    await database.dispose()
    assert rows == [1, 3]  # nothing of the failed transaction, all of the next one
