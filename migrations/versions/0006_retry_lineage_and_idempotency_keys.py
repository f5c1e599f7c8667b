"""Retries: a batch's source batch, and the Idempotency-Key an operation sends.

A retried operation that never got a response is sent under its original
operation's id, so an upstream that keeps idempotency keys drops it if the
first request did get through; NULL means the operation's own id.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("retry_of", sqlmodel.AutoString(length=36), nullable=True))
    with op.batch_alter_table("batch_operations") as batch:
        batch.add_column(
            sa.Column("idempotency_key", sqlmodel.AutoString(length=36), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("batch_operations") as batch:
        batch.drop_column("idempotency_key")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("retry_of")
