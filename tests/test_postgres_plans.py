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
from tests.statements import with_values

BATCHES = 400
OPERATIONS_PER_BATCH = 250  # 100,000 operations in all


async def plan_of(connection: DbConnection, statement: Any) -> str:
    literal = statement.compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    rows = await connection.execute(text(f"EXPLAIN {literal}"))
    return "\n".join(row[0] for row in rows)


async def plans_inside(database: str, call: str, *arguments: Any) -> list[str]:
    """The plans of the statements a function runs for this call, as PostgreSQL
    would keep them for every later call (generic plans: PL/pgSQL switches to
    them after five calls), told by auto_explain."""
    connection = await postgres.connect(database)
    plans: list[str] = []
    connection.add_log_listener(lambda _, message: plans.append(message.message))
    try:
        await connection.execute("LOAD 'auto_explain'")
        for setting in (
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_nested_statements = on",
            "plan_cache_mode = force_generic_plan",
            "client_min_messages = log",
        ):
            await connection.execute(f"SET {setting}")
        await connection.fetch(call, *arguments)
    finally:
        await connection.close()
    return [plan for plan in plans if call not in plan and reads_a_table(plan)]


def reads_a_table(plan: str) -> bool:
    nodes = plan.partition("\n  ")[2] if "Query Text" in plan else plan
    return " on batch_operations" in nodes or " on batches" in nodes


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
    # The functions of migration 0011, each statement inside them: the turn, the
    # count, the claim or the mark.
    claim_steps = await plans_inside(
        private_postgres,
        "SELECT * FROM batchd_claim($1, $2, $3, 2, '{}', 'me', $4, $5)",
        ["b50"],
        [32],
        [8],
        now,
        now + 30,
    )
    claimed = await postgres.connect(private_postgres)
    try:
        rows = await claimed.fetch(
            "SELECT id, lease_generation FROM batch_operations"
            " WHERE batch_id = 'b50' AND status = 'in_progress' AND sent_at IS NULL"
        )
    finally:
        await claimed.close()
    mark_steps = await plans_inside(
        private_postgres,
        "SELECT * FROM batchd_mark_sent($1, $2, $3, '{}', 'me', $4)",
        ["b50"] * len(rows),
        [row[0] for row in rows],
        [row[1] for row in rows],
        now,
    )
    # The batch's row, its count, its claim or its mark.
    assert len(rows) == 8 and len(claim_steps) == 3 and len(mark_steps) == 3
    for step in [*claim_steps, *mark_steps]:
        assert "Seq Scan" not in step, step
    async with database.write() as connection:
        plans = {
            **{f"claim step {n}": plan for n, plan in enumerate(claim_steps)},
            **{f"mark step {n}": plan for n, plan in enumerate(mark_steps)},
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
