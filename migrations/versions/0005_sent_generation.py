"""Operations: the claim generation under which a POST or PATCH was sent.

Prefetched claims are in progress long before their request goes out, so
recovery could not tell a claimed POST from a sent one and failed both as
`interrupted`. The engine now records, grouped, which non-idempotent claims it
is about to send; recovery returns the others to pending. A claim is the
generation it was made under, so a mark from an earlier claim never counts.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batch_operations") as table:
        table.add_column(sa.Column("sent_generation", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch_operations") as table:
        table.drop_column("sent_generation")
