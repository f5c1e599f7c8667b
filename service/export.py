"""ExportBatchOperations: a batch's operations in submitted order, a bounded page at a time.

Memory stays bounded however large the batch: operations are read a few at a
time (keyset pagination on position, so each read starts where the last one
ended, in the claims' (batch_id, status, position) index or the batch's
positions), and a page is handed to gRPC before the next is read. grpc.aio
waits for the client's flow-control window before it asks the generator for
more, so a slow client slows the reads rather than growing a buffer, and a
client that goes away cancels the generator. Each read is a transaction of its
own: an export never holds a snapshot (or SQLite's WAL) while the client reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import select

from batchd.v1 import batch_pb2
from service import convert, metrics, store
from service.database import Database, DbConnection
from service.errors import not_found
from service.store import operations

# Operations read per query: a few stored responses (each up to a few MiB) at a time.
ROWS_PER_READ = 8
# A page carries at most this many operations, and stops growing past PAGE_BUDGET_BYTES,
# well under gRPC's default 4 MiB receive limit, so that any client (grpcurl too) reads
# every page except one holding a single larger operation (each fits in a message).
OPERATIONS_PER_PAGE = 100
PAGE_BUDGET_BYTES = 1024 * 1024


async def export_pages(
    database: Database, tenant: str, batch_id: str, statuses: Sequence[str]
) -> AsyncIterator[batch_pb2.ExportBatchOperationsResponse]:
    async with database.read() as connection:
        if await store.get_batch(connection, tenant, batch_id) is None:
            raise not_found("batch", batch_id)
    page = batch_pb2.ExportBatchOperationsResponse()
    size = 0
    after = -1
    while True:
        async with database.read() as connection:
            rows = await _next_rows(connection, tenant, batch_id, statuses, after)
        for row in rows:
            message = convert.operation_message(row)
            grows = message.ByteSize()
            if page.batch_operations and size + grows > PAGE_BUDGET_BYTES:
                yield _sent(page)
                page, size = batch_pb2.ExportBatchOperationsResponse(), 0
            page.batch_operations.append(message)
            size += grows
            if len(page.batch_operations) == OPERATIONS_PER_PAGE:
                yield _sent(page)
                page, size = batch_pb2.ExportBatchOperationsResponse(), 0
        if len(rows) < ROWS_PER_READ:
            break
        after = rows[-1].position
    if page.batch_operations:
        yield _sent(page)


def _sent(
    page: batch_pb2.ExportBatchOperationsResponse,
) -> batch_pb2.ExportBatchOperationsResponse:
    metrics.EXPORTED_OPERATIONS.inc(len(page.batch_operations))
    return page


async def _next_rows(
    connection: DbConnection, tenant: str, batch_id: str, statuses: Sequence[str], after: int
) -> Sequence[Any]:
    """The next operations after position `after`. Their positions first, from the
    (batch_id, status, position) index alone; then those rows only: ordering whole
    rows would read (and sort) every stored response of the batch at each step."""
    positions = (
        select(operations.c.position)
        .where(operations.c.batch_id == batch_id, operations.c.position > after)
        .order_by(operations.c.position)
        .limit(ROWS_PER_READ)
    )
    if statuses:
        positions = positions.where(operations.c.status.in_(statuses))
    wanted = list((await connection.execute(positions)).scalars())
    if not wanted:
        return []
    rows = await connection.execute(
        select(operations)
        .where(
            operations.c.tenant == tenant,
            operations.c.batch_id == batch_id,
            operations.c.position.in_(wanted),
        )
        .order_by(operations.c.position)
    )
    return rows.all()
