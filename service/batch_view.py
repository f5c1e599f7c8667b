"""Batches as messages in the view asked for; the full view within a size budget.

A batch's stored responses can add up to far more than one gRPC message may
carry; the full view inlines operations in submitted order while they fit in
FULL_VIEW_BUDGET_BYTES (the size policy is batchd/messages.py's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from batchd.messages import FULL_VIEW_BUDGET_BYTES, MAX_MESSAGE_BYTES
from batchd.v1 import batch_pb2
from service import convert, store, validation
from service.database import DbConnection
from service.outcome_counts import batches_with_counts

# Operations read per query: memory stays bounded however large the batch.
PAGE_SIZE = 200
# Operations of a list page read per query: a few stored responses at a time.
LIST_ROWS_PER_READ = 8


class Budget:
    """Bytes of operations a response may still carry."""

    def __init__(self, total: int = FULL_VIEW_BUDGET_BYTES) -> None:
        self.left = total

    def inline(self, batch: batch_pb2.Batch, rows: Iterable[Any]) -> bool:
        """Appends these operations to the batch while they fit; False once one did not."""
        for row in rows:
            operation = convert.operation_message(row)
            size = operation.ByteSize()
            if size > self.left:
                self.left = 0
                return False
            self.left -= size
            batch.batch_operations.append(operation)
        return True


async def batch_messages(
    connection: DbConnection, tenant: str, batch_ids: Sequence[str], view: int
) -> list[batch_pb2.Batch]:
    """The tenant's batches of these ids that exist, in the ids' order, each read with its
    outcome counts in one statement for all of them."""
    found = await batches_with_counts(connection, batch_ids, tenant)
    messages = [convert.batch_message(*found[i]) for i in batch_ids if i in found]
    if view == batch_pb2.BATCH_VIEW_FULL:
        budget = Budget()
        for message in messages:
            await _inline_stored(connection, tenant, message, budget)
    return messages


async def _inline_stored(
    connection: DbConnection, tenant: str, batch: batch_pb2.Batch, budget: Budget
) -> None:
    after = -1
    # Once the budget is spent, or every operation is in, no more queries.
    while budget.left > 0 and len(batch.batch_operations) < batch.batch_operations_count:
        rows = await store.operations_page(connection, tenant, batch.id, after, PAGE_SIZE)
        if not budget.inline(batch, rows) or len(rows) < PAGE_SIZE:
            return
        after = rows[-1].position


async def operations_reply(
    connection: DbConnection, ids: Sequence[str], total: int
) -> batch_pb2.ListBatchOperationsResponse:
    """A page of these operations, read a few at a time, refused as soon as it grows
    past one message: a refused page never holds more than that in memory."""
    reply = batch_pb2.ListBatchOperationsResponse(total_size=total)
    left = MAX_MESSAGE_BYTES - reply.ByteSize()
    for start in range(0, len(ids), LIST_ROWS_PER_READ):
        chunk = ids[start : start + LIST_ROWS_PER_READ]
        rows = await store.operations_by_id(connection, chunk)
        for operation_id in chunk:
            if operation_id not in rows:  # deleted since the page was listed
                continue
            message = convert.operation_message(rows.pop(operation_id))
            left -= message.ByteSize() + 6  # its tag and length
            if left < 0:
                # gRPC would fail the send itself, as RESOURCE_EXHAUSTED: "try later".
                raise validation.page_too_large()
            reply.batch_operations.append(message)
    return reply
