"""Batches and their operations, as first released.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def json_column() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sqlmodel.AutoString(length=36), nullable=False),
        sa.Column("tenant", sqlmodel.AutoString(length=200), nullable=False),
        sa.Column("status", sqlmodel.AutoString(length=16), nullable=False),
        sa.Column("operations_count", sa.Integer(), nullable=False),
        sa.Column("finished_count", sa.Integer(), nullable=False),
        sa.Column("sealed_authorization", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_index("ix_batches_tenant_created", "batches", ["tenant", "created_at"])
    op.create_index("ix_batches_tenant_updated", "batches", ["tenant", "updated_at"])

    op.create_table(
        "batch_operations",
        sa.Column("id", sqlmodel.AutoString(length=36), nullable=False),
        sa.Column("batch_id", sqlmodel.AutoString(length=36), nullable=False),
        sa.Column("tenant", sqlmodel.AutoString(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("http_method", sqlmodel.AutoString(length=8), nullable=False),
        sa.Column("path", sqlmodel.AutoString(), nullable=False),
        sa.Column("query_params", json_column(), nullable=True),
        sa.Column("body", json_column(), nullable=True),
        sa.Column("status", sqlmodel.AutoString(length=16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", json_column(), nullable=True),
        sa.Column("failure_reason", sqlmodel.AutoString(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sqlmodel.AutoString(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("lease_generation", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_operations_batch_status_position",
        "batch_operations",
        ["batch_id", "status", "position"],
    )
    op.create_index(
        "ix_operations_status_lease", "batch_operations", ["status", "lease_expires_at"]
    )
    op.create_index("ix_operations_tenant_created", "batch_operations", ["tenant", "created_at"])
    op.create_index("ix_operations_tenant_updated", "batch_operations", ["tenant", "updated_at"])


def downgrade() -> None:
    op.drop_table("batch_operations")
    op.drop_table("batches")
