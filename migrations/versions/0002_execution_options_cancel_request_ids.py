"""Execution options, cancel, create request ids and correlation ids.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "create_requests",
        sa.Column("tenant", sqlmodel.AutoString(length=200), nullable=False),
        sa.Column("request_id", sqlmodel.AutoString(length=200), nullable=False),
        sa.Column("fingerprint", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("batch_id", sqlmodel.AutoString(length=36), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"]),
        sa.PrimaryKeyConstraint("tenant", "request_id"),
    )
    op.create_index("ix_create_requests_created", "create_requests", ["created_at"])
    # Server defaults fill the rows that exist already.
    with op.batch_alter_table("batches") as batch:
        batch.add_column(
            sa.Column("sequential", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("stop_on_failure", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("max_concurrency", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("canceled_at", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("correlation_id", sqlmodel.AutoString(length=128), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        for column in (
            "correlation_id",
            "canceled_at",
            "max_concurrency",
            "stop_on_failure",
            "sequential",
        ):
            batch.drop_column(column)
    op.drop_index("ix_create_requests_created", table_name="create_requests")
    op.drop_table("create_requests")
