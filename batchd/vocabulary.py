"""The contract's spellings of methods and statuses, the proto enums they stand for, and
the service's full name (for health checks, reflection and method paths).

Shared by the service (rows to messages), the gateway (JSON) and batchctl.
"""

from __future__ import annotations

from batchd.v1 import batch_pb2

SERVICE_NAME = batch_pb2.DESCRIPTOR.services_by_name["BatchService"].full_name

HTTP_METHODS: dict[str, batch_pb2.HttpMethod] = {
    "GET": batch_pb2.HTTP_METHOD_GET,
    "POST": batch_pb2.HTTP_METHOD_POST,
    "PUT": batch_pb2.HTTP_METHOD_PUT,
    "PATCH": batch_pb2.HTTP_METHOD_PATCH,
    "DELETE": batch_pb2.HTTP_METHOD_DELETE,
}
OPERATION_STATUSES: dict[str, batch_pb2.BatchOperationStatus] = {
    "pending": batch_pb2.BATCH_OPERATION_STATUS_PENDING,
    "in_progress": batch_pb2.BATCH_OPERATION_STATUS_IN_PROGRESS,
    "completed": batch_pb2.BATCH_OPERATION_STATUS_COMPLETED,
    "failed": batch_pb2.BATCH_OPERATION_STATUS_FAILED,
    "timed_out": batch_pb2.BATCH_OPERATION_STATUS_TIMED_OUT,
    "canceled": batch_pb2.BATCH_OPERATION_STATUS_CANCELED,
}
BATCH_STATUSES: dict[str, batch_pb2.BatchStatus] = {
    "pending": batch_pb2.BATCH_STATUS_PENDING,
    "in_progress": batch_pb2.BATCH_STATUS_IN_PROGRESS,
    "completed": batch_pb2.BATCH_STATUS_COMPLETED,
    "canceled": batch_pb2.BATCH_STATUS_CANCELED,
}
METHOD_NAMES = {enum: name for name, enum in HTTP_METHODS.items()}
OPERATION_STATUS_NAMES = {enum: name for name, enum in OPERATION_STATUSES.items()}
BATCH_STATUS_NAMES = {enum: name for name, enum in BATCH_STATUSES.items()}
