"""On SQLite too, the queries that run all the time use the index that fits as the
tables grow: the statistics migration 0003 writes stand in for ANALYZE."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.dialects import sqlite

from service import claims
from service.database import Database, open_database
from service.migrate import upgrade
from service.models import OperationStatus
from service.store import (
    Ordering,
    PageRequest,
    finished_operations_of,
    list_batches,
    list_operations,
    operations,
    operations_page,
)
from tests.statements import claim_of_batch_50, with_values

TENANTS = 20
BATCHES = 400
OPERATIONS_PER_BATCH = 250  # 100,000 operations in all
TENANT_INDEXES = ("ix_operations_tenant_created", "ix_operations_tenant_updated")


def fill(path: Path, now: float) -> None:
    """Finished batches, but every 50th in progress with all its operations pending."""
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO batches (id, tenant, status, operations_count, finished_count,"
            " sequential, stop_on_failure, max_concurrency, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 0, 0, 0, 0, ?, ?)",
            [
                (f"b{b}", f"t{b % TENANTS}", _status(b, "in_progress"), OPERATIONS_PER_BATCH)
                + (now + b,) * 2
                for b in range(BATCHES)
            ],
        )
        connection.executemany(
            "INSERT INTO batch_operations (id, batch_id, tenant, position, http_method, path,"
            " status, attempts, lease_generation, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 'GET', '/x', ?, 0, 0, ?, ?)",
            [
                (f"o{b}-{p}", f"b{b}", f"t{b % TENANTS}", p, _status(b, "pending")) + (now + b,) * 2
                for b in range(BATCHES)
                for p in range(OPERATIONS_PER_BATCH)
            ],
        )


def _status(batch: int, unfinished: str) -> str:
    return unfinished if batch % 50 == 0 else "completed"


async def plan_of(connection: Any, sql: str, parameters: Any = ()) -> str:
    rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)
    return "\n".join(row[3] for row in rows)


def literal(statement: Any) -> str:
    return str(statement.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))


Call = Callable[[Any], Awaitable[Any]]


async def plans_of(database: Database, calls: list[Call]) -> list[str]:
    """The plans of the statements these store calls run, on a read connection."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, sql: str, parameters: Any, *_: Any) -> None:
        seen.append((sql, parameters))

    async with database.read() as connection:
        event.listen(database.engine.sync_engine, "before_cursor_execute", record)
        try:
            for call in calls:
                await call(connection)
        finally:
            event.remove(database.engine.sync_engine, "before_cursor_execute", record)
        return [await plan_of(connection, sql, parameters) for sql, parameters in seen]


PAGE = PageRequest(20, 1, Ordering())
# How the service pages, lists and watches one batch's operations: a page; a count and
# a page of the list; a count of the (empty) filtered list; a watch.
BATCH_SCOPED: list[Call] = [
    lambda connection: operations_page(connection, "t3", "b3", -1, 200),
    lambda connection: list_operations(connection, "t3", ["b3"], [], PAGE),
    lambda connection: list_operations(connection, "t3", ["b3"], ["failed"], PAGE),
    lambda connection: finished_operations_of(connection, {"b3": time.time()}),
]
# A tenant's lists filtered by the commonest status: a count and a page each.
TENANT_WIDE: list[Call] = [
    lambda connection: list_batches(connection, "t3", [], ["completed"], PAGE),
    lambda connection: list_operations(connection, "t3", [], ["completed"], PAGE),
]


async def engine_plans(database: Database, now: float) -> list[str]:
    """A claim, the engine's look for work and its recovery, on the writer's connection."""
    recovery = select(operations.c.id).where(
        operations.c.status == OperationStatus.IN_PROGRESS, operations.c.lease_expires_at < now
    )
    looking = with_values(claims.BATCHES_WITH_PENDING_WORK, limit=9, held_tenants=["held"])
    async with database.write() as connection:
        claim = await plan_of(connection, *claim_of_batch_50(connection.dialect, now))
        return [
            claim,
            *[await plan_of(connection, literal(query)) for query in (looking, recovery)],
        ]


async def test_batch_scoped_queries_and_claims_use_the_batch_index_at_100k(
    tmp_path: Path,
) -> None:
    """Through the connections the service itself uses once it has migrated."""
    path = tmp_path / "plans.db"
    database = open_database(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(database)
        now = time.time()
        fill(path, now)
        batch_plans = await plans_of(database, BATCH_SCOPED)
        tenant_plans = await plans_of(database, TENANT_WIDE)
        claim, *other_engine_plans = await engine_plans(database, now)
    finally:
        await database.dispose()
    assert len(batch_plans) == 5 and len(tenant_plans) == 4
    for plan in batch_plans:
        assert "ix_operations_batch_status_position" in plan, plan
        assert not any(index in plan for index in TENANT_INDEXES), plan
    for plan in tenant_plans:
        assert "ix_batches_tenant" in plan or "ix_operations_tenant" in plan, plan
    for plan in [claim, *other_engine_plans]:
        assert "SCAN batch_operations" not in plan and "SCAN batches" not in plan, plan
    # The claimed rows are found by id, not by walking every pending operation.
    assert "ix_operations_status_lease" not in claim, claim
