"""The retry body `{"statuses": [...], "response_statuses": ["5xx", "429"]}` (optional)
as a gRPC RetryBatchRequest.

Wrong JSON types are a 400; an unknown status name is a 422 naming it. Response
statuses go as written, for the service to check with the rest.
"""

from __future__ import annotations

from typing import Any

from batchd.v1 import batch_pb2
from batchd.vocabulary import OPERATION_STATUSES
from gateway.batch_body import parse_json
from gateway.errors import ValidationError, bad_request, unprocessable

_FIELDS = ("statuses", "response_statuses")


def retry_request(
    batch_id: str, raw: bytes, view: batch_pb2.BatchView, request_id: str
) -> batch_pb2.RetryBatchRequest:
    document: Any = parse_json(raw) if raw.strip() else {}
    if not isinstance(document, dict):
        raise bad_request('The body must be a JSON object {"statuses": [...]} or empty')
    lists = {name: _strings(document, name) for name in _FIELDS}
    errors = [
        ValidationError(
            f"statuses[{index}]",
            "batch.retry.statuses.invalid",
            f"unknown status {name[:50]!r}; one of {', '.join(sorted(OPERATION_STATUSES))}",
        )
        for index, name in enumerate(lists["statuses"])
        if name not in OPERATION_STATUSES
    ]
    if errors:
        raise unprocessable("batch.retry.invalid", errors)
    return batch_pb2.RetryBatchRequest(
        id=batch_id,
        statuses=[OPERATION_STATUSES[name] for name in lists["statuses"]],
        response_statuses=lists["response_statuses"],
        view=view,
        request_id=request_id,
    )


def _strings(document: dict[str, Any], name: str) -> list[str]:
    value = document.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_request(f"{name} must be a JSON array of strings")
    return value
