"""What counts as success, status names as people type them, and exit statuses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from batchd.v1 import batch_pb2

# Exit statuses; argparse already exits with USAGE on a bad command line.
SUCCESS = 0
NOT_ALL_SUCCEEDED = 1
USAGE = 2
RPC_ERROR = 3

_OPERATION_PREFIX = "BATCH_OPERATION_STATUS_"
_BATCH_PREFIX = "BATCH_STATUS_"
OPERATION_STATUSES = {
    "pending": batch_pb2.BATCH_OPERATION_STATUS_PENDING,
    "in_progress": batch_pb2.BATCH_OPERATION_STATUS_IN_PROGRESS,
    "completed": batch_pb2.BATCH_OPERATION_STATUS_COMPLETED,
    "failed": batch_pb2.BATCH_OPERATION_STATUS_FAILED,
    "timed_out": batch_pb2.BATCH_OPERATION_STATUS_TIMED_OUT,
    "canceled": batch_pb2.BATCH_OPERATION_STATUS_CANCELED,
}
_FINISHED = (
    batch_pb2.BATCH_OPERATION_STATUS_COMPLETED,
    batch_pb2.BATCH_OPERATION_STATUS_FAILED,
    batch_pb2.BATCH_OPERATION_STATUS_TIMED_OUT,
    batch_pb2.BATCH_OPERATION_STATUS_CANCELED,
)


def operation_status_name(status: batch_pb2.BatchOperationStatus) -> str:
    return batch_pb2.BatchOperationStatus.Name(status).removeprefix(_OPERATION_PREFIX).lower()


def batch_status_name(status: batch_pb2.BatchStatus) -> str:
    return batch_pb2.BatchStatus.Name(status).removeprefix(_BATCH_PREFIX).lower()


def succeeded(operation: batch_pb2.BatchOperation) -> bool:
    return (
        operation.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
        and operation.HasField("response_status")
        and 200 <= operation.response_status < 300
    )


def finished(operation: batch_pb2.BatchOperation) -> bool:
    return operation.status in _FINISHED


def outcome(operation: batch_pb2.BatchOperation) -> str:
    """`succeeded`, `non_2xx`, or the status of an operation that got no response."""
    if succeeded(operation):
        return "succeeded"
    if operation.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED:
        return "non_2xx"
    return operation_status_name(operation.status)


def tally(operations: Iterable[batch_pb2.BatchOperation]) -> Counter[str]:
    return Counter(outcome(operation) for operation in operations)


def exit_status(operations: Iterable[batch_pb2.BatchOperation]) -> int:
    return SUCCESS if all(succeeded(op) for op in operations) else NOT_ALL_SUCCEEDED
