"""How a batch's operations ended: by status, and the completed ones by response class.

Read when a batch is shown, in one grouped statement for every batch of a reply
(a list page of 100 batches: one statement, not 100), rather than kept as
counters: the statuses change in claims, results, cancels, stops and lease
recovery, and counters would have to move in each of those transactions, while
this read cannot disagree with the operations it counts. The statement reads
the operations' (batch_id, status) index and each finished operation's
response status, nothing of its bodies.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select

from batchd.v1 import batch_pb2
from service.batch_progress import BATCH_IDS
from service.database import DbConnection
from service.models import TERMINAL_STATUSES, OperationStatus
from service.store import operations

# Batches per statement: well within every database's limit of bound variables.
BATCHES_PER_READ = 500
_STATUS_FIELDS = {
    OperationStatus.COMPLETED: "completed",
    OperationStatus.FAILED: "failed",
    OperationStatus.TIMED_OUT: "timed_out",
    OperationStatus.CANCELED: "canceled",
}
_CLASS_FIELDS = {2: "responses_2xx", 3: "responses_3xx", 4: "responses_4xx", 5: "responses_5xx"}

OUTCOMES = (
    select(
        operations.c.batch_id,
        operations.c.status,
        operations.c.response_status,
        func.count().label("count"),
    )
    .where(operations.c.batch_id.in_(BATCH_IDS), operations.c.status.in_(TERMINAL_STATUSES))
    .group_by(operations.c.batch_id, operations.c.status, operations.c.response_status)
)


async def outcome_counts(
    connection: DbConnection, batch_ids: Sequence[str]
) -> dict[str, batch_pb2.BatchOutcomeCounts]:
    """The counts of each of these batches (zeros for one with nothing ended)."""
    counts = {batch_id: batch_pb2.BatchOutcomeCounts() for batch_id in batch_ids}
    unique = sorted(counts)
    for start in range(0, len(unique), BATCHES_PER_READ):
        chunk = unique[start : start + BATCHES_PER_READ]
        rows = await connection.execute(OUTCOMES, {"batch_ids": chunk})
        for batch_id, status, response_status, count in rows:
            _add(counts[batch_id], status, response_status, count)
    return counts


def _add(
    counts: batch_pb2.BatchOutcomeCounts, status: str, response_status: int | None, count: int
) -> None:
    name = _STATUS_FIELDS[OperationStatus(status)]
    setattr(counts, name, getattr(counts, name) + count)
    # Only a completed operation got a response; a 1xx never ends one.
    response_class = _CLASS_FIELDS.get((response_status or 0) // 100)
    if status == OperationStatus.COMPLETED and response_class is not None:
        setattr(counts, response_class, getattr(counts, response_class) + count)
