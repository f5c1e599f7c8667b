"""A tenant's webhook endpoints: checked, stored with a sealed signing secret, read back.

The URL is checked here for its form only (http or https, a host, no user name
or password); the address it resolves to is checked at every delivery, where
it counts (engine/webhook_addresses.py).
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import grpc
from sqlalchemy import Row, bindparam, delete, func, insert, select

from batchd.v1 import batch_pb2
from service.auth import Caller
from service.convert import timestamp
from service.credentials import Sealer
from service.database import Database, DbConnection
from service.errors import ApiError, Violation, invalid, not_found
from service.models import WebhookDelivery, WebhookEndpoint, new_row
from service.store import Listing, PageRequest

endpoints = WebhookEndpoint.__table__  # type: ignore[attr-defined]
deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]

EVENT_TYPES = ("batch.completed", "batch.canceled")
# As Stripe allows: every endpoint multiplies each finish's deliveries.
MAX_ENDPOINTS_PER_TENANT = 16
MAX_URL_LENGTH = 2048
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
KIND = "webhook_endpoint"

ENDPOINT_BY_ID = select(endpoints).where(
    endpoints.c.id == bindparam("id"), endpoints.c.tenant == bindparam("tenant")
)
list_endpoints = Listing(endpoints, "id").page
list_deliveries = Listing(deliveries, "endpoint_id").page


def new_secret() -> str:
    """`whsec_` and the base64 of a random key, as Standard Webhooks shows secrets."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def url_problem(url: str) -> tuple[str, str] | None:
    """Why this is no webhook URL, as (code suffix, message); None when it is one."""
    if not url:
        return "blank", "url is required"
    if len(url) > MAX_URL_LENGTH:
        return "too_long", f"url must be at most {MAX_URL_LENGTH} characters"
    if not url.isascii() or not url.isprintable() or " " in url:
        return "invalid", "url must be printable ASCII without spaces (percent-encode the rest)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port out of range or not a number)
    except ValueError:
        return "invalid", "url is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "invalid", "url must be an http or https URL"
    if "@" in parts.netloc:
        return "invalid", "url must not carry a user name or password"
    if not parts.hostname:
        return "invalid", "url must name a host"
    return None


def _checked(endpoint: batch_pb2.WebhookEndpoint) -> list[str]:
    violations = []
    if problem := url_problem(endpoint.url):
        code, message = problem
        violations.append(Violation(f"{KIND}.url", f"{KIND}.url.{code}", message))
    if not endpoint.webhook_events:
        violations.append(
            Violation(
                f"{KIND}.webhook_events",
                f"{KIND}.webhook_events.blank",
                f"webhook_events needs at least one of {', '.join(EVENT_TYPES)}",
            )
        )
    if len(endpoint.webhook_events) > len(EVENT_TYPES):
        # Refused whole: a list longer than the known types must repeat or invent some,
        # and checking a huge one entry by entry would hold the event loop.
        violations.append(
            Violation(
                f"{KIND}.webhook_events",
                f"{KIND}.webhook_events.invalid",
                f"at most {len(EVENT_TYPES)} event types: {', '.join(EVENT_TYPES)}",
            )
        )
    else:
        violations += _event_violations(endpoint.webhook_events)
    if violations:
        raise invalid(f"{KIND}.invalid", violations)
    return list(endpoint.webhook_events)


def _event_violations(events: Sequence[str]) -> list[Violation]:
    violations: list[Violation] = []
    seen: set[str] = set()
    for index, event in enumerate(events):
        problem = (
            f"unknown event type; known: {', '.join(EVENT_TYPES)}"
            if event not in EVENT_TYPES
            else "listed twice"
            if event in seen
            else ""
        )
        seen.add(event)
        if problem:
            violations.append(
                Violation(
                    f"{KIND}.webhook_events[{index}]", f"{KIND}.webhook_events.invalid", problem
                )
            )
    return violations


async def create_endpoint(
    database: Database,
    caller: Caller,
    request: batch_pb2.CreateWebhookEndpointRequest,
    sealer: Sealer,
) -> batch_pb2.WebhookEndpoint:
    """The new endpoint as its creator sees it: the only time its secret is shown."""
    events = _checked(request.webhook_endpoint)
    secret = new_secret()
    now = time.time()
    row = new_row(
        WebhookEndpoint,
        id=str(uuid.uuid4()),
        tenant=caller.tenant,
        url=request.webhook_endpoint.url,
        events=events,
        sealed_secret=sealer.seal(secret),
        created_at=now,
        updated_at=now,
    )
    async with database.write() as connection:
        await _lock_tenants_endpoints(connection, caller.tenant)
        count = (
            select(func.count()).select_from(endpoints).where(endpoints.c.tenant == caller.tenant)
        )
        if (await connection.execute(count)).scalar_one() >= MAX_ENDPOINTS_PER_TENANT:
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{KIND}.limit_reached",
                f"A tenant may have at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints; "
                "delete one first",
            )
        await connection.execute(insert(endpoints), [row])
    message = endpoint_message(row)
    message.signing_secret = secret
    return message


async def _lock_tenants_endpoints(connection: DbConnection, tenant: str) -> None:
    """Two creates at once on PostgreSQL would both count below the limit: they take
    turns per tenant, until their transactions end. SQLite's writers take turns anyway."""
    if connection.dialect.name == "postgresql":
        key = func.hashtextextended(f"webhook_endpoints:{tenant}", 0)
        await connection.execute(select(func.pg_advisory_xact_lock(key)))


async def owned_endpoint(connection: DbConnection, tenant: str, raw_id: str) -> Row[Any]:
    """The tenant's endpoint with this id; NOT_FOUND for anyone else's."""
    try:
        endpoint_id = str(uuid.UUID(raw_id))
    except ValueError:
        raise not_found(KIND, raw_id[:100]) from None
    row: Row[Any] | None = (
        await connection.execute(ENDPOINT_BY_ID, {"id": endpoint_id, "tenant": tenant})
    ).first()
    if row is None:
        raise not_found(KIND, raw_id)
    return row


async def delete_endpoint(database: Database, caller: Caller, raw_id: str) -> str:
    """Deletes the endpoint and its deliveries, those still waiting included."""
    async with database.write() as connection:
        row = await owned_endpoint(connection, caller.tenant, raw_id)
        # Explicit rather than by the foreign key: SQLite enforces it only per connection.
        await connection.execute(delete(deliveries).where(deliveries.c.endpoint_id == row.id))
        await connection.execute(delete(endpoints).where(endpoints.c.id == row.id))
    return str(row.id)


def endpoint_message(row: Any) -> batch_pb2.WebhookEndpoint:
    """The endpoint without its secret (row: a table row, or the dict of a new one)."""
    values = row if isinstance(row, dict) else row._mapping
    return batch_pb2.WebhookEndpoint(
        id=values["id"],
        url=values["url"],
        webhook_events=values["events"],
        create_time=timestamp(values["created_at"]),
        update_time=timestamp(values["updated_at"]),
    )


DELIVERY_STATUSES = {
    "pending": batch_pb2.WEBHOOK_DELIVERY_STATUS_PENDING,
    "delivered": batch_pb2.WEBHOOK_DELIVERY_STATUS_DELIVERED,
    "failed": batch_pb2.WEBHOOK_DELIVERY_STATUS_FAILED,
}


def delivery_message(row: Any) -> batch_pb2.WebhookDelivery:
    message = batch_pb2.WebhookDelivery(
        id=row.id,
        webhook_endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=row.event_type,
        batch_id=row.batch_id,
        status=DELIVERY_STATUSES[row.status],
        attempts=row.attempts,
        last_error=row.last_error or "",
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
    )
    if row.last_response_status is not None:
        message.last_response_status = row.last_response_status
    if row.last_attempt_at is not None:
        message.last_attempt_time.CopyFrom(timestamp(row.last_attempt_at))
    if row.status == "pending":
        message.next_attempt_time.CopyFrom(timestamp(row.next_attempt_at))
    return message


async def endpoints_page(
    connection: DbConnection, tenant: str, page: PageRequest
) -> tuple[Sequence[Row[Any]], int]:
    return await list_endpoints(connection, tenant, [], [], page)
