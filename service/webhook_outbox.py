"""The webhook outbox: events written with the finish of their batch, claimed and settled.

A batch's finish (batch_progress.py) and its events are one transaction: no
finish is ever without its events, no event without its finish, whichever
replica finishes it, and only the transaction whose update finished the batch
writes them, so each subscribed endpoint gets one event per finish.

Senders (engine/webhook_sender.py) claim due deliveries with a lease, skipping
rows other replicas hold (FOR UPDATE SKIP LOCKED; SQLite's writers take turns
anyway), and count the attempt as they claim it: a sender killed mid-attempt
has made one. Once the lease expires, any sender takes the delivery up again.
Settling an attempt is fenced by owner and attempt number, so a sender whose
lease was taken over changes nothing. Leases and due times are on the
database's clock, so replicas' clocks do not decide who sends when. A claim
takes at most a tenant's share of the sender's slots, counting the attempts it
has under way, so a tenant whose receiver never answers holds only its share
while other tenants' events go out.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, bindparam, delete, insert, or_, select, update

from batchd.rest_objects import batch_object
from batchd.v1 import batch_pb2
from service import batch_view
from service.database import DbConnection
from service.database_clock import database_now
from service.models import BatchStatus, WebhookDelivery, WebhookDeliveryStatus, new_row
from service.store import batches, columns_of
from service.webhook_endpoints import deliveries, endpoints

EVENT_TYPE_OF_STATUS = {
    BatchStatus.COMPLETED: "batch.completed",
    BatchStatus.CANCELED: "batch.canceled",
}
# Long retry schedules back off to hourly (Standard Webhooks' recommendation).
RETRY_CAP_SECONDS = 3600.0
MAX_ERROR_CHARACTERS = 300


async def record_finished(connection: DbConnection, now: float, batch_ids: Sequence[str]) -> None:
    """Writes an event of each of these just-finished batches for every endpoint of
    its tenant subscribed to it; one query when the tenants have no endpoints."""
    if not batch_ids:
        return
    tenants = select(batches.c.tenant).where(batches.c.id.in_(batch_ids))
    subscribed = (
        await connection.execute(
            select(endpoints.c.id, endpoints.c.tenant, endpoints.c.events).where(
                endpoints.c.tenant.in_(tenants)
            )
        )
    ).all()
    if not subscribed:
        return
    rows = (await connection.execute(select(batches).where(batches.c.id.in_(batch_ids)))).all()
    new_deliveries: list[dict[str, Any]] = []
    for row in rows:
        event_type = EVENT_TYPE_OF_STATUS[row.status]
        receivers = [
            endpoint.id
            for endpoint in subscribed
            if endpoint.tenant == row.tenant and event_type in endpoint.events
        ]
        if not receivers:
            continue
        event_id = str(uuid.uuid4())
        payload = await _event_payload(connection, row, event_id, event_type, now)
        new_deliveries.extend(
            new_row(
                WebhookDelivery,
                id=str(uuid.uuid4()),
                event_id=event_id,
                endpoint_id=endpoint_id,
                tenant=row.tenant,
                event_type=event_type,
                batch_id=row.id,
                payload=payload,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
            for endpoint_id in receivers
        )
    if new_deliveries:
        await connection.execute(insert(deliveries), new_deliveries)


async def _event_payload(
    connection: DbConnection, row: Any, event_id: str, event_type: str, now: float
) -> str:
    """The event's body, serialised once: every attempt sends (and signs) these bytes.

    Its batch is the batch as GetBatch builds it and as GET /v1/batches/{id} shows it,
    with its metadata, and always its outcome counts (`expand[]=outcome_counts`)."""
    [message] = await batch_view.batch_messages(
        connection, row.tenant, [row.id], batch_pb2.BATCH_VIEW_BASIC
    )
    event = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created_at": int(now),
        "data": {"object": batch_object(message, with_outcome_counts=True)},
    }
    return json.dumps(event, separators=(",", ":"))


@dataclass(frozen=True)
class DueDelivery:
    """A claimed delivery: what an attempt sends, and the attempt number that fences it."""

    id: str
    tenant: str
    event_id: str
    endpoint_id: str
    payload: str
    attempts: int


@dataclass(frozen=True)
class Destination:
    url: str
    sealed_secret: bytes


def _is_due() -> list[Any]:
    now = database_now()
    return [
        deliveries.c.status == WebhookDeliveryStatus.PENDING,
        deliveries.c.next_attempt_at <= now,
        or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at < now),
    ]


# A read, so that an idle sender's polls take no write lock (SQLite has one writer).
_ANY_DUE = select(deliveries.c.id).where(*_is_due()).limit(1)


async def any_due(connection: DbConnection) -> bool:
    return (await connection.execute(_ANY_DUE)).first() is not None


# The earliest due deliveries of tenants with room; a claim picks its rows from them.
_CANDIDATES = (
    select(deliveries.c.id, deliveries.c.tenant)
    .where(*_is_due(), deliveries.c.tenant.not_in(bindparam("full", expanding=True)))
    .order_by(deliveries.c.next_attempt_at)
    .limit(bindparam("scan", type_=Integer))
)
# Candidates read before the claim locks them: rows another sender claimed meanwhile
# are skipped, as locked (SKIP LOCKED) or as no longer due.
SCAN_PER_SLOT = 8


def _claim_statement() -> Any:
    picked = (
        select(deliveries.c.id)
        .where(deliveries.c.id.in_(bindparam("ids", expanding=True)), *_is_due())
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    now = database_now()
    return (
        update(deliveries)
        .where(
            deliveries.c.id.in_(select(picked.c.id)),
            deliveries.c.status == WebhookDeliveryStatus.PENDING,
        )
        .values(
            lease_owner=bindparam("owner"),
            lease_expires_at=now + bindparam("lease_seconds"),
            attempts=deliveries.c.attempts + 1,
            last_attempt_at=now,
            updated_at=now,
        )
        .returning(*columns_of(deliveries, DueDelivery))
    )


_CLAIM_DUE = _claim_statement()


@dataclass(frozen=True)
class Room:
    """What a sender may claim: `slots` attempts in all, at most `per_tenant` of a
    tenant's at once, `under_way` counting each tenant's attempts running already."""

    slots: int
    per_tenant: int
    under_way: Mapping[str, int]

    def full_tenants(self) -> list[str]:
        return sorted(t for t, n in self.under_way.items() if n >= self.per_tenant)

    def pick(self, candidates: Sequence[Any]) -> list[str]:
        """The candidates' ids in due order, each tenant's up to its room left."""
        taken: Counter[str] = Counter(self.under_way)
        ids: list[str] = []
        for candidate in candidates:
            if len(ids) == self.slots:
                break
            if taken[candidate.tenant] < self.per_tenant:
                taken[candidate.tenant] += 1
                ids.append(candidate.id)
        return ids


async def claim_due(
    connection: DbConnection, owner: str, room: Room, lease_seconds: float
) -> tuple[list[DueDelivery], dict[str, Destination]]:
    """Due deliveries, as many as `room` allows, now `owner`'s for `lease_seconds`,
    and their endpoints."""
    scan = {"full": room.full_tenants(), "scan": room.slots * SCAN_PER_SLOT}
    ids = room.pick((await connection.execute(_CANDIDATES, scan)).all())
    if not ids:
        return [], {}
    parameters = {"ids": ids, "owner": owner, "lease_seconds": lease_seconds}
    claimed = [
        DueDelivery(**row) for row in (await connection.execute(_CLAIM_DUE, parameters)).mappings()
    ]
    if not claimed:
        return [], {}
    endpoint_ids = sorted({delivery.endpoint_id for delivery in claimed})
    rows = await connection.execute(
        select(endpoints.c.id, endpoints.c.url, endpoints.c.sealed_secret).where(
            endpoints.c.id.in_(endpoint_ids)
        )
    )
    return claimed, {row.id: Destination(row.url, row.sealed_secret) for row in rows}


@dataclass(frozen=True)
class Outcome:
    """How an attempt went; `final` when no further attempt can help."""

    delivered: bool
    label: str
    response_status: int | None = None
    error: str | None = None
    final: bool = False


def retry_delay(attempts: int, base: float) -> float:
    """Exponential from `base` seconds, capped, with jitter so that many failures at
    once (a receiver that was down) do not come back all at the same moment."""
    delay = min(base * 2 ** min(attempts - 1, 32), RETRY_CAP_SECONDS)
    jittered: float = delay * random.uniform(0.8, 1.0)
    return jittered


async def settle(
    connection: DbConnection,
    owner: str,
    delivery: DueDelivery,
    outcome: Outcome,
    max_attempts: int,
    retry_base: float,
) -> bool:
    """Records an attempt's outcome while the claim still stands; whether it did."""
    now = database_now()
    values: dict[str, Any] = {
        "lease_owner": None,
        "lease_expires_at": None,
        "last_response_status": outcome.response_status,
        "last_error": outcome.error[:MAX_ERROR_CHARACTERS] if outcome.error else None,
        "updated_at": now,
    }
    if outcome.delivered:
        values["status"] = WebhookDeliveryStatus.DELIVERED
    elif outcome.final or delivery.attempts >= max_attempts:
        values["status"] = WebhookDeliveryStatus.FAILED
    else:
        values["next_attempt_at"] = now + retry_delay(delivery.attempts, retry_base)
    settled = await connection.execute(
        update(deliveries)
        .where(
            deliveries.c.id == delivery.id,
            deliveries.c.lease_owner == owner,
            deliveries.c.attempts == delivery.attempts,
        )
        .values(**values)
    )
    return bool(settled.rowcount)


async def purge_settled(connection: DbConnection, before: float) -> int:
    """Forgets delivered and failed deliveries last changed before `before`."""
    purged = await connection.execute(
        delete(deliveries).where(
            deliveries.c.status.in_(
                (WebhookDeliveryStatus.DELIVERED, WebhookDeliveryStatus.FAILED)
            ),
            deliveries.c.updated_at < before,
        )
    )
    return int(purged.rowcount)
