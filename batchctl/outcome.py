"""What counts as success, status names as people type them, and exit statuses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from batchd.v1 import batch_pb2
from batchd.vocabulary import BATCH_STATUS_NAMES, OPERATION_STATUS_NAMES

# Exit statuses; argparse already exits with USAGE on a bad command line.
SUCCESS = 0
NOT_ALL_SUCCEEDED = 1
USAGE = 2
RPC_ERROR = 3

_FINISHED = (
    batch_pb2.BATCH_OPERATION_STATUS_COMPLETED,
    batch_pb2.BATCH_OPERATION_STATUS_FAILED,
    batch_pb2.BATCH_OPERATION_STATUS_TIMED_OUT,
    batch_pb2.BATCH_OPERATION_STATUS_CANCELED,
)


def operation_status_name(status: batch_pb2.BatchOperationStatus) -> str:
    return OPERATION_STATUS_NAMES.get(status, "unspecified")


def batch_status_name(status: batch_pb2.BatchStatus) -> str:
    return BATCH_STATUS_NAMES.get(status, "unspecified")


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
