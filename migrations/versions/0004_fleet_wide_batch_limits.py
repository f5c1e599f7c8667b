"""Fleet-wide batch limits: a batch's in-flight limit, and a sent marker on claims.

`batches.in_flight_limit` is how many of the batch's operations may be claimed
at once across every replica (1 for a sequential batch), fixed when the batch
is created. Batches stored before it get what their options said, capped at
the default per-batch setting (16) that the replicas then applied each on
their own. The server default stays: during a rolling deploy, replicas of
the previous version still create batches without the column (and dropping
the default would make SQLite rebuild the table, losing the planner
statistics 0003 stored for it). `batch_operations.sent_at` marks a claim as sent, just before it
is: a cancel ends only unsent claims.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_PER_BATCH = 16


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(
            sa.Column(
                "in_flight_limit",
                sa.Integer(),
                nullable=False,
                server_default=str(DEFAULT_PER_BATCH),
            )
        )
    op.execute(
        "UPDATE batches SET in_flight_limit = CASE"
        " WHEN sequential THEN 1"
        f" WHEN max_concurrency BETWEEN 1 AND {DEFAULT_PER_BATCH} THEN max_concurrency"
        f" ELSE {DEFAULT_PER_BATCH} END"
    )
    with op.batch_alter_table("batch_operations") as operations:
        operations.add_column(sa.Column("sent_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch_operations") as operations:
        operations.drop_column("sent_at")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("in_flight_limit")
