"""CreateBatch's idempotency keys (the proto's AIP-155 `request_id`, REST's
Idempotency-Key), per tenant: a repeat within a day returns the first batch."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, delete, insert, select

from service.database import DbConnection
from service.models import CreateRequest

create_requests = CreateRequest.__table__  # type: ignore[attr-defined]
# How long a key is remembered.
IDEMPOTENCY_KEY_TTL_SECONDS = 24 * 3600


async def get(connection: DbConnection, tenant: str, key: str) -> Row[Any] | None:
    query = select(create_requests).where(
        create_requests.c.tenant == tenant, create_requests.c.idempotency_key == key
    )
    return (await connection.execute(query)).first()


async def remember(
    connection: DbConnection, tenant: str, key: str, fingerprint: str, batch_id: str, now: float
) -> None:
    await connection.execute(
        insert(create_requests).values(
            tenant=tenant,
            idempotency_key=key,
            fingerprint=fingerprint,
            batch_id=batch_id,
            created_at=now,
        )
    )


async def forget(connection: DbConnection, tenant: str, key: str) -> None:
    await connection.execute(
        delete(create_requests).where(
            create_requests.c.tenant == tenant, create_requests.c.idempotency_key == key
        )
    )


async def purge_expired(connection: DbConnection, now: float) -> None:
    older_than = now - IDEMPOTENCY_KEY_TTL_SECONDS
    await connection.execute(
        delete(create_requests).where(create_requests.c.created_at < older_than)
    )
