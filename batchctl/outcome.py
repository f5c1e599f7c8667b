"""What counts as success, status names as people type them, and exit statuses.

One vocabulary everywhere batchctl counts operations (the progress bar, the summary,
cancel): an operation's status as `show --status` takes it, except that `completed`
says what came back: `succeeded` (a 2xx) or `completed with 5xx` (and 1xx, 3xx, 4xx).
So "12 completed with 5xx" is found by `show --status completed`, and `failed` means
the status `failed` (no response), never an error answer.
"""

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
    """`succeeded`, `completed with 5xx` (its response's class), or its status."""
    if succeeded(operation):
        return "succeeded"
    if operation.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED:
        return f"completed with {operation.response_status // 100}xx"
    return operation_status_name(operation.status)


# Outcomes of operations that were executed (sent, or tried): they "ran".
_RAN_ORDER = (
    "succeeded",
    *(f"completed with {n}xx" for n in (1, 3, 4, 5)),
    "failed",
    "timed_out",
)
# The others, after them: never sent, or not finished yet.
_NOT_RUN_ORDER = ("canceled", "in_progress", "pending")


def tally(operations: Iterable[batch_pb2.BatchOperation]) -> Counter[str]:
    return Counter(outcome(operation) for operation in operations)


def ran(counts: Counter[str]) -> Counter[str]:
    """The counts of the operations that were executed, whatever came of it."""
    return Counter({name: n for name, n in counts.items() if name not in _NOT_RUN_ORDER})


def in_order(counts: Counter[str]) -> list[tuple[str, int]]:
    """The non-zero counts, executed outcomes first, then the operations that did not run."""
    order = (*_RAN_ORDER, *_NOT_RUN_ORDER)
    names = [name for name in order if counts[name]]
    names += sorted(name for name in counts if name not in order and counts[name])
    return [(name, counts[name]) for name in names]


def exit_status(operations: Iterable[batch_pb2.BatchOperation]) -> int:
    return SUCCESS if all(succeeded(op) for op in operations) else NOT_ALL_SUCCEEDED
