"""How a batch's operations ended: by status, and the completed ones by response class.

Read with the batch itself, in one statement for every batch of a reply (a list page of
100 batches: one statement, not 100): the batch rows joined to their operations'
counts. One statement sees one snapshot, on SQLite's autocommit readers and under
PostgreSQL's READ COMMITTED alike, so the counts always add up to the row's
finished_batch_operations_count; two statements would let operations that finish in
between show in one and not the other.

They are read rather than kept as counters: the statuses change in claims, results,
cancels, stops and lease recovery, and counters would have to move in each of those
transactions, while this read cannot disagree with the operations it counts. It reads
the batch index (batch_id, status, position, response_status) alone (migrations 0007
and 0010), never the rows with their stored responses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, case, func, select

from batchd.v1 import batch_pb2
from service.database import DbConnection
from service.models import TERMINAL_STATUSES, OperationStatus
from service.store import batches, operations

# Its own parameter, not batch_progress's BATCH_IDS: batch_progress (through the
# webhook outbox) reads batches with their counts, so it cannot be imported here.
BATCH_IDS: BindParameter[str] = bindparam("batch_ids", expanding=True)
# Batches per statement: well within every database's limit of bound variables.
BATCHES_PER_READ = 500
FIELDS = [field.name for field in batch_pb2.BatchOutcomeCounts.DESCRIPTOR.fields]
_status, _response = operations.c.status, operations.c.response_status


def _completed_with(hundred: int) -> ColumnElement[bool]:
    return and_(
        _status == OperationStatus.COMPLETED,
        _response >= hundred * 100,
        _response < hundred * 100 + 100,
    )


_CONDITIONS: dict[str, ColumnElement[bool]] = {
    "completed": _status == OperationStatus.COMPLETED,
    "failed": _status == OperationStatus.FAILED,
    "timed_out": _status == OperationStatus.TIMED_OUT,
    "canceled": _status == OperationStatus.CANCELED,
    **{f"responses_{n}xx": _completed_with(n) for n in (2, 3, 4, 5)},
}
assert list(_CONDITIONS) == FIELDS
# The counts of the batches in BATCH_IDS, one row per batch that has any.
COUNTS = (
    select(
        operations.c.batch_id,
        *(
            func.sum(case((condition, 1), else_=0)).label(f"outcome_{name}")
            for name, condition in _CONDITIONS.items()
        ),
    )
    .where(operations.c.batch_id.in_(BATCH_IDS), _status.in_(TERMINAL_STATUSES))
    .group_by(operations.c.batch_id)
    .subquery("outcomes")
)
BATCHES_WITH_COUNTS = (
    select(batches, *(COUNTS.c[f"outcome_{name}"] for name in FIELDS))
    .outerjoin(COUNTS, COUNTS.c.batch_id == batches.c.id)
    .where(batches.c.id.in_(BATCH_IDS))
)
_TENANTSBATCHES_WITH_COUNTS = BATCHES_WITH_COUNTS.where(batches.c.tenant == bindparam("tenant"))


async def batches_with_counts(
    connection: DbConnection, batch_ids: Sequence[str], tenant: str | None = None
) -> dict[str, tuple[Any, batch_pb2.BatchOutcomeCounts]]:
    """These batches (the tenant's only, when given) with their counts, by id."""
    query = BATCHES_WITH_COUNTS if tenant is None else _TENANTSBATCHES_WITH_COUNTS
    found: dict[str, tuple[Any, batch_pb2.BatchOutcomeCounts]] = {}
    unique = sorted(set(batch_ids))
    for start in range(0, len(unique), BATCHES_PER_READ):
        parameters = {"batch_ids": unique[start : start + BATCHES_PER_READ], "tenant": tenant}
        for row in await connection.execute(query, parameters):
            counts = batch_pb2.BatchOutcomeCounts(
                **{name: getattr(row, f"outcome_{name}") or 0 for name in FIELDS}
            )
            found[row.id] = (row, counts)
    return found
