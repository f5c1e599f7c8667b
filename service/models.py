"""The SQLModel tables: every stored field of batches and their operations.

Timestamps are Unix seconds as floats, so ordering keeps sub-second precision
while the API shows whole seconds. Statuses are stored as their contract
spellings (`pending`, `in_progress`, ...), readable in plain SQL.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, LargeBinary, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import AutoString, Field, SQLModel

from batchd.logs import MAX_REQUEST_ID_LENGTH
from batchd.tracing import TRACEPARENT_LENGTH

# JSONB on PostgreSQL; SQL NULL (not JSON 'null') for a Python None.
JsonColumn = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class OperationStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    # An extension of the contract: never sent, the batch having been canceled
    # or stopped after a failure.
    CANCELED = "canceled"


TERMINAL_STATUSES = (
    OperationStatus.COMPLETED,
    OperationStatus.FAILED,
    OperationStatus.TIMED_OUT,
    OperationStatus.CANCELED,
)


class BatchStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELED = "canceled"


FINISHED_BATCH_STATUSES = (BatchStatus.COMPLETED, BatchStatus.CANCELED)
# CreateBatch's idempotency key (the proto's request_id, REST's Idempotency-Key).
MAX_IDEMPOTENCY_KEY_LENGTH = 200


class Batch(SQLModel, table=True):
    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_tenant_created", "tenant", "created_at"),
        Index("ix_batches_tenant_updated", "tenant", "updated_at"),
        # The engine scans unfinished batches only; they are few.
        Index("ix_batches_status", "status"),
    )

    id: str = Field(primary_key=True, max_length=36)
    tenant: str = Field(max_length=200)
    status: str = Field(default=BatchStatus.PENDING, max_length=16)
    operations_count: int
    finished_count: int = 0
    # The caller's Authorization header, Fernet-encrypted; erased on completion.
    sealed_authorization: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    # Execution options: one at a time in order; cancel the rest after a
    # failure; a cap on running operations (0: the server's per-batch limit).
    sequential: bool = False
    stop_on_failure: bool = False
    max_concurrency: int = 0
    # How many of its operations the fleet may hold claimed at once, fixed at
    # create time (1 when sequential) so that every replica's claims enforce the
    # same number, whatever each one's own BATCH_MAX_IN_FLIGHT_PER_BATCH says.
    in_flight_limit: int
    # Set by a cancel request: the batch ends as canceled, not completed.
    canceled_at: float | None = None
    # The create call's request id, sent upstream with every operation.
    correlation_id: str | None = Field(default=None, max_length=MAX_REQUEST_ID_LENGTH)
    # The create call's W3C trace context (when tracing is on): each operation's
    # execution span is its child, and the upstream sees the same trace id.
    traceparent: str | None = Field(default=None, max_length=TRACEPARENT_LENGTH)
    # The batch this one retries (RetryBatch); no foreign key: it outlives that batch.
    retry_of: str | None = Field(default=None, max_length=36)
    # The caller's metadata (string keys to string values), in the column
    # `metadata`: SQLAlchemy's declarative classes keep that name for themselves.
    # NULL when the batch has none.
    labels: dict[str, str] | None = Field(
        default=None, sa_column=Column("metadata", JsonColumn, key="labels")
    )
    created_at: float
    updated_at: float


class CreateRequest(SQLModel, table=True):
    """A create call's idempotency key, per tenant, for safe retries."""

    __tablename__ = "create_requests"
    __table_args__ = (Index("ix_create_requests_created", "created_at"),)

    tenant: str = Field(primary_key=True, max_length=200)
    # Stored in the column `request_id`, after the proto's field.
    idempotency_key: str = Field(
        sa_column=Column(
            "request_id",
            AutoString(MAX_IDEMPOTENCY_KEY_LENGTH),
            key="idempotency_key",
            primary_key=True,
        )
    )
    # SHA-256 of the request's canonical form: a repeat must carry the same batch.
    fingerprint: str = Field(max_length=64)
    batch_id: str = Field(foreign_key="batches.id", max_length=36)
    created_at: float


class BatchOperation(SQLModel, table=True):
    __tablename__ = "batch_operations"
    __table_args__ = (
        # Claims: the next pending operations of one batch, in submitted order.
        # Outcome counts (outcome_counts.py) read this index alone, never the rows
        # with their stored responses. One index for both: every status write puts
        # a new entry into each index (migration 0010).
        Index(
            "ix_operations_batch_status_position",
            "batch_id",
            "status",
            "position",
            "response_status",
        ),
        Index("ix_operations_tenant_created", "tenant", "created_at"),
        Index("ix_operations_tenant_updated", "tenant", "updated_at"),
        # Recovery: in-progress operations whose lease expired.
        Index("ix_operations_status_lease", "status", "lease_expires_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    batch_id: str = Field(foreign_key="batches.id", max_length=36)
    tenant: str = Field(max_length=200)
    position: int
    http_method: str = Field(max_length=8)
    path: str
    query_params: dict[str, Any] | None = Field(default=None, sa_column=Column(JsonColumn))
    body: dict[str, Any] | None = Field(default=None, sa_column=Column(JsonColumn))
    status: str = Field(default=OperationStatus.PENDING, max_length=16)
    response_status: int | None = None
    response_body: Any = Field(default=None, sa_column=Column(JsonColumn))
    failure_reason: str | None = Field(default=None, max_length=64)
    attempts: int = 0
    # The claim: who runs it, until when, and a generation that fences late
    # writers whose lease was taken over.
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: float | None = None
    lease_generation: int = 0
    # Set just before the claim is sent. A cancel or a stop ends only unsent claims,
    # so an operation recorded `canceled` was never sent, and recovery returns an
    # unsent POST or PATCH to pending rather than failing it as interrupted.
    sent_at: float | None = None
    # The Idempotency-Key sent upstream when not the operation's own id: a
    # retry of an operation that never got a response reuses the original's.
    idempotency_key: str | None = Field(default=None, max_length=36)
    created_at: float
    updated_at: float


class RateBucket(SQLModel, table=True):
    """A token bucket toward the upstream, shared by every replica (rate_buckets.py).

    Times are the database's clock, never a replica's, so skew cannot mint tokens.
    """

    __tablename__ = "rate_buckets"

    # "upstream", or "tenant:" and the tenant.
    name: str = Field(primary_key=True, max_length=208)
    tokens: float
    updated_at: float
    # What the last take granted: the one UPDATE that takes tokens returns it.
    last_granted: int = 0


class UpstreamPause(SQLModel, table=True):
    """Until when the upstream asked (Retry-After) that a tenant's sends wait."""

    __tablename__ = "upstream_pauses"

    tenant: str = Field(primary_key=True, max_length=200)
    # The database's clock.
    paused_until: float


class WebhookDeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    # Every attempt allowed failed.
    FAILED = "failed"


class WebhookEndpoint(SQLModel, table=True):
    """A tenant's URL that receives events of its batches (webhook_endpoints.py)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_tenant_created", "tenant", "created_at"),)

    id: str = Field(primary_key=True, max_length=36)
    tenant: str = Field(max_length=200)
    url: str = Field(max_length=2048)
    # Event types, such as ["batch.completed"].
    events: list[str] = Field(sa_column=Column(JsonColumn, nullable=False))
    # The signing secret (`whsec_...`), Fernet-encrypted as credentials are.
    sealed_secret: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: float
    updated_at: float


class WebhookDelivery(SQLModel, table=True):
    """An outbox row: one event for one endpoint, written in the transaction that
    finished the batch, and sent until the endpoint answers 2xx (webhook_outbox.py)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # One event reaches each endpoint once.
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        # Senders: pending deliveries that are due.
        Index("ix_webhook_deliveries_status_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    # The webhook-id header of every attempt; the payload's `id`.
    event_id: str = Field(max_length=36)
    endpoint_id: str = Field(
        sa_column=Column(
            AutoString(36), ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False
        )
    )
    tenant: str = Field(max_length=200)
    event_type: str = Field(max_length=32)
    # No foreign key: the event outlives its batch.
    batch_id: str = Field(max_length=36)
    # The exact body sent on every attempt, serialised once.
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=WebhookDeliveryStatus.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: float
    # The claim of the sender making an attempt; an expired lease is anyone's.
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: float | None = None
    last_attempt_at: float | None = None
    last_response_status: int | None = None
    # Short and bounded: the receiver's answer is never stored whole.
    last_error: str | None = Field(default=None, max_length=300)
    created_at: float
    updated_at: float


def new_row(model: type[SQLModel], **values: Any) -> dict[str, Any]:
    """A new row of the model's table: the given values, and the model's defaults
    for the rest, so that a column added to the model needs no other change."""
    defaults = {
        name: field.default for name, field in model.model_fields.items() if not field.is_required()
    }
    return {**defaults, **values}
