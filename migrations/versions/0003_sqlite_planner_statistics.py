"""SQLite: fixed planner statistics, so batch-scoped queries use the batch index.

Without statistics SQLite's planner takes an equality on `tenant` to be as
selective as one on `batch_id`, and it picked the tenant indexes: every list of
a batch's operations, every page of a full view and every event of a watch
scanned all of the tenant's operations (25 ms a query at 100,000 stored, growing
with the table), and each claim's UPDATE walked every pending operation through
the status index. The service never runs ANALYZE, and what it measures would
move plans with the data: averages per distinct value, which are wrong for
skewed columns (measured statistics turned the engine's look for pending work
into a scan of every batch). These rows state what the schema means instead
(the sqlite_stat1 format: rows, then rows per distinct value of each leading
column prefix), as SQLite's documentation describes for fixing plans: a tenant
holds many operations, a batch at most a thousand, an id one. A status is an
average quarter of the rows: saying fewer would send a tenant's list filtered
by a common status through the status index, across every tenant.
PostgreSQL keeps real statistics (autovacuum).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATISTICS = {
    ("batch_operations", "sqlite_autoindex_batch_operations_1"): "1000000 1",
    ("batch_operations", "ix_operations_batch_status_position"): "1000000 1000 250 1",
    ("batch_operations", "ix_operations_tenant_created"): "1000000 100000 1000",
    ("batch_operations", "ix_operations_tenant_updated"): "1000000 100000 10",
    ("batch_operations", "ix_operations_status_lease"): "1000000 250000 10",
    ("batches", "sqlite_autoindex_batches_1"): "1000 1",
    ("batches", "ix_batches_tenant_created"): "1000 100 1",
    ("batches", "ix_batches_tenant_updated"): "1000 100 1",
    ("batches", "ix_batches_status"): "1000 250",
    ("create_requests", "sqlite_autoindex_create_requests_1"): "1000 100 1",
    ("create_requests", "ix_create_requests_created"): "1000 1",
}
_TABLES = sorted({table for table, _ in STATISTICS})


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # ANALYZE of a one-row table creates sqlite_stat1 at no cost.
    op.execute("ANALYZE alembic_version")
    _forget_statistics()
    insert = sa.text("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (:tbl, :idx, :stat)")
    for (table, index), stat in STATISTICS.items():
        op.get_bind().execute(insert, {"tbl": table, "idx": index, "stat": stat})
    # The planner reads sqlite_stat1 when it loads the schema; this reloads it here
    # too, for the connection that migrated and then serves.
    op.execute("ANALYZE sqlite_master")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _forget_statistics()


def _forget_statistics() -> None:
    op.get_bind().execute(
        sa.text("DELETE FROM sqlite_stat1 WHERE tbl IN :tables").bindparams(
            sa.bindparam("tables", _TABLES, expanding=True)
        )
    )
