"""The queries that run all the time stay index scans as the tables grow (PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects import postgresql

from service import claims
from service.database import DbConnection, open_database
from service.models import OperationStatus
from service.store import batches, operations
from tests import postgres
from tests.statements import claim_of_batch_50, with_values

BATCHES = 400
OPERATIONS_PER_BATCH = 250  # 100,000 operations in all


async def plan_of(connection: DbConnection, statement: Any) -> str:
    literal = statement.compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    rows = await connection.execute(text(f"EXPLAIN {literal}"))
    return "\n".join(row[0] for row in rows)


async def plan_of_sql(connection: DbConnection, sql: str, parameters: Any) -> str:
    rows = await connection.exec_driver_sql(f"EXPLAIN {sql}", parameters)
    return "\n".join(row[0] for row in rows)


async def test_claims_lists_and_recovery_use_indexes_at_100k_operations(
    private_postgres: str,
) -> None:
    database = open_database(postgres.url_of(private_postgres))
    now = time.time()
    async with database.write() as connection:
        await connection.execute(
            text(
                "INSERT INTO batches (id, tenant, status, operations_count, finished_count,"
                " sequential, stop_on_failure, max_concurrency, created_at, updated_at)"
                " SELECT 'b' || n, 't' || (n % 20), CASE WHEN n % 50 = 0 THEN 'in_progress'"
                " ELSE 'completed' END, :per, 0, false, false, 0, :now + n, :now + n"
                " FROM generate_series(1, :batches) AS n"
            ),
            {"per": OPERATIONS_PER_BATCH, "now": now, "batches": BATCHES},
        )
        await connection.execute(
            text(
                "INSERT INTO batch_operations (id, batch_id, tenant, position, http_method, path,"
                " status, attempts, lease_generation, created_at, updated_at)"
                " SELECT 'o' || b || '-' || p, 'b' || b, 't' || (b % 20), p, 'GET', '/x',"
                " CASE WHEN b % 50 = 0 THEN 'pending' ELSE 'completed' END, 0, 0,"
                " :now + b, :now + b"
                " FROM generate_series(1, :batches) AS b,"
                " generate_series(1, :per) AS p"
            ),
            {"per": OPERATIONS_PER_BATCH, "now": now, "batches": BATCHES},
        )
    async with database.write() as connection:
        await connection.execute(text("ANALYZE"))
        plans = {
            "claim": await plan_of_sql(connection, *claim_of_batch_50(connection.dialect, now)),
            "pending batches": await plan_of(
                connection,
                with_values(claims.BATCHES_WITH_PENDING_WORK, limit=256, held_tenants=["t7"]),
            ),
            "recovery": await plan_of(
                connection,
                select(operations.c.id).where(
                    operations.c.status == OperationStatus.IN_PROGRESS,
                    operations.c.lease_expires_at < now,
                ),
            ),
            "operation list": await plan_of(
                connection,
                select(operations)
                .where(operations.c.tenant == "t3")
                .order_by(operations.c.created_at.desc(), operations.c.id.desc())
                .limit(20),
            ),
            "batch list": await plan_of(
                connection,
                select(batches)
                .where(batches.c.tenant == "t3")
                .order_by(batches.c.created_at.desc(), batches.c.id.desc())
                .limit(20),
            ),
            "batch count": await plan_of(
                connection,
                select(func.count())
                .select_from(operations)
                .where(
                    operations.c.batch_id == "b50",
                    operations.c.status.in_(["completed", "failed", "timed_out", "canceled"]),
                ),
            ),
        }
    await database.dispose()
    for name, plan in plans.items():
        assert "Seq Scan on batch_operations" not in plan, f"{name}:\n{plan}"
        assert "Index" in plan, f"{name}:\n{plan}"
