"""Stored rows as API messages."""

from __future__ import annotations

from typing import Any

from google.protobuf import timestamp_pb2

from batchd.json_values import to_struct, to_value
from batchd.v1 import batch_pb2
from batchd.vocabulary import BATCH_STATUSES, HTTP_METHODS, OPERATION_STATUSES
from service.models import FINISHED_BATCH_STATUSES


def timestamp(unix_seconds: float) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(
        seconds=int(unix_seconds), nanos=int((unix_seconds % 1) * 1_000_000_000)
    )


def operation_message(row: Any) -> batch_pb2.BatchOperation:
    message = batch_pb2.BatchOperation(
        id=row.id,
        batch_id=row.batch_id,
        http_method=HTTP_METHODS[row.http_method],
        path=row.path,
        status=OPERATION_STATUSES[row.status],
        attempts=row.attempts,
        position=row.position,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
    )
    if row.query_params is not None:
        message.query_params.CopyFrom(to_struct(row.query_params))
    if row.body is not None:
        message.body.CopyFrom(to_struct(row.body))
    if row.response_status is not None:
        message.response_status = row.response_status
        message.response_body.CopyFrom(to_value(row.response_body))
    if row.failure_reason is not None:
        message.failure_reason = row.failure_reason
    return message


def batch_message(
    row: Any, outcome_counts: batch_pb2.BatchOutcomeCounts | None = None
) -> batch_pb2.Batch:
    """The batch; its outcome counts as given (outcome_counts.py reads them), or
    none yet: a batch just created has no operation that ended."""
    return batch_pb2.Batch(
        id=row.id,
        status=BATCH_STATUSES[row.status],
        batch_operations_count=row.operations_count,
        finished_batch_operations_count=row.finished_count,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
        execution_options=batch_pb2.ExecutionOptions(
            sequential=row.sequential,
            stop_on_failure=row.stop_on_failure,
            max_concurrency=row.max_concurrency,
        ),
        retry_of=row.retry_of or "",
        metadata=row.labels or {},
        outcome_counts=outcome_counts or batch_pb2.BatchOutcomeCounts(),
    )


def held_back_until(row: Any, pauses: dict[str, float]) -> float | None:
    """Until when the batch's sends wait for its tenant's pause; None if they do not."""
    if row.status in FINISHED_BATCH_STATUSES:
        return None
    return pauses.get(row.tenant)


def hold_back(message: batch_pb2.Batch, until: float | None) -> batch_pb2.Batch:
    """The message, saying that its batch is held back by an upstream pause, while it is."""
    if until is not None:
        message.held_back.CopyFrom(
            batch_pb2.HeldBack(
                reason=batch_pb2.HeldBack.REASON_UPSTREAM_PAUSE, until=timestamp(until)
            )
        )
    return message
