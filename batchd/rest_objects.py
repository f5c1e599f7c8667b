"""API messages as the REST contract's JSON objects: every key present, unset values as null.

On the ground floor because the gateway answers with them and the service's webhook events
carry them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchd.json_values import from_struct, from_value
from batchd.v1 import batch_pb2
from batchd.vocabulary import BATCH_STATUS_NAMES, METHOD_NAMES, OPERATION_STATUS_NAMES

JSONObject = dict[str, Any]
OPERATIONS_URL = "/v1/batch_operations"


def list_object(
    data: Sequence[JSONObject], count: int, limit: int, page: int, url: str
) -> JSONObject:
    return {
        "object": "list",
        "pagination": {"count": count, "limit": limit, "page": page, "url": url},
        "data": list(data),
    }


def batch_object(
    batch: batch_pb2.Batch, with_operations: bool = False, with_outcome_counts: bool = False
) -> JSONObject:
    """The batch; `with_operations` inlines its operations (`expand[]=batch_operations`),
    `with_outcome_counts` adds `outcome_counts` (`expand[]=outcome_counts`, and always
    in webhook events)."""
    shown: JSONObject = {
        "id": batch.id,
        "object": "batch",
        "finished_batch_operations_count": batch.finished_batch_operations_count,
        "batch_operations_count": batch.batch_operations_count,
        "status": BATCH_STATUS_NAMES.get(batch.status),
        "created_at": batch.create_time.seconds,
        "updated_at": batch.update_time.seconds,
        "metadata": dict(batch.metadata),
    }
    if with_outcome_counts:
        shown["outcome_counts"] = outcome_counts_object(batch.outcome_counts)
    if with_operations:
        # The service inlines as many operations as fit in one reply: when
        # `count` is more than `data` holds, the rest are read from `url`.
        operations = [operation_object(op) for op in batch.batch_operations]
        shown["batch_operations"] = list_object(
            operations, batch.batch_operations_count, len(operations), 1, OPERATIONS_URL
        )
    return shown


def outcome_counts_object(counts: batch_pb2.BatchOutcomeCounts) -> JSONObject:
    """How the operations ended: `completed`, `failed`, `timed_out`, `canceled`, and the
    completed ones by response class, `responses_2xx` to `responses_5xx`."""
    return {field.name: getattr(counts, field.name) for field in counts.DESCRIPTOR.fields}


def operation_object(
    operation: batch_pb2.BatchOperation, batch: JSONObject | None = None
) -> JSONObject:
    """The operation; `batch` inlines its batch object in place of the batch id."""
    return {
        "id": operation.id,
        "object": "batch_operation",
        "body": from_struct(operation.body) if operation.HasField("body") else None,
        "http_method": METHOD_NAMES.get(operation.http_method),
        "path": operation.path,
        "query_params": (
            from_struct(operation.query_params) if operation.HasField("query_params") else None
        ),
        "response_body": (
            from_value(operation.response_body) if operation.HasField("response_body") else None
        ),
        "response_status": (
            operation.response_status if operation.HasField("response_status") else None
        ),
        "status": OPERATION_STATUS_NAMES.get(operation.status),
        "batch": batch if batch is not None else operation.batch_id,
        "created_at": operation.create_time.seconds,
        "updated_at": operation.update_time.seconds,
    }
