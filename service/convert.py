"""Stored rows as API messages."""

from __future__ import annotations

from typing import Any

from google.protobuf import timestamp_pb2

from batchd.json_values import fill_struct, fill_value
from batchd.v1 import batch_pb2
from batchd.vocabulary import BATCH_STATUSES, HTTP_METHODS, OPERATION_STATUSES
from service.models import FINISHED_BATCH_STATUSES


def timestamp(unix_seconds: float) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    set_time(message, unix_seconds)
    return message


def set_time(field: timestamp_pb2.Timestamp, unix_seconds: float) -> None:
    """Fills a message's Timestamp field in place: a new Timestamp passed to the
    constructor would be built, then copied."""
    field.seconds = int(unix_seconds)
    field.nanos = int((unix_seconds % 1) * 1_000_000_000)


def operation_message(row: Any) -> batch_pb2.BatchOperation:
    message = batch_pb2.BatchOperation()
    fill_operation(message, row)
    return message


def fill_operation(message: batch_pb2.BatchOperation, row: Any) -> None:
    """Fills an empty BatchOperation, such as a reply's field, in place: a message built
    apart would be copied in whole, its stored response with it. Read on every
    GetBatchOperation: each field is set in place, nothing copied."""
    message.id = row.id
    message.batch_id = row.batch_id
    message.http_method = HTTP_METHODS[row.http_method]
    message.path = row.path
    message.status = OPERATION_STATUSES[row.status]
    message.attempts = row.attempts
    message.position = row.position
    set_time(message.create_time, row.created_at)
    set_time(message.update_time, row.updated_at)
    if row.query_params is not None:
        fill_struct(message.query_params, row.query_params)
    if row.body is not None:
        fill_struct(message.body, row.body)
    if row.response_status is not None:
        message.response_status = row.response_status
        fill_value(message.response_body, row.response_body)
    if row.failure_reason is not None:
        message.failure_reason = row.failure_reason


def batch_message(
    row: Any, outcome_counts: batch_pb2.BatchOutcomeCounts | None = None
) -> batch_pb2.Batch:
    """The batch; its outcome counts as given (outcome_counts.py reads them), or
    none yet: a batch just created has no operation that ended."""
    message = batch_pb2.Batch(
        id=row.id,
        status=BATCH_STATUSES[row.status],
        batch_operations_count=row.operations_count,
        finished_batch_operations_count=row.finished_count,
        retry_of=row.retry_of or "",
        metadata=row.labels or {},
        outcome_counts=outcome_counts or batch_pb2.BatchOutcomeCounts(),
    )
    set_time(message.create_time, row.created_at)
    set_time(message.update_time, row.updated_at)
    options = message.execution_options
    options.sequential = row.sequential
    options.stop_on_failure = row.stop_on_failure
    options.max_concurrency = row.max_concurrency
    return message


def held_back_until(row: Any, pauses: dict[str, float]) -> float | None:
    """Until when the batch's sends wait for its tenant's pause; None if they do not."""
    if row.status in FINISHED_BATCH_STATUSES:
        return None
    return pauses.get(row.tenant)


def hold_back(message: batch_pb2.Batch, until: float | None) -> batch_pb2.Batch:
    """The message, saying that its batch is held back by an upstream pause, while it is."""
    if until is not None:
        held = message.held_back
        held.reason = batch_pb2.HeldBack.REASON_UPSTREAM_PAUSE
        set_time(held.until, until)
    return message
