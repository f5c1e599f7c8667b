"""A batch's progress: its finished count, its end, and what stops or cancels it.

Counts move in the same transaction as the operations they count, raised by
the number of results being written or recounted from the operations' own
statuses, so a read never sees them disagree. A batch whose every operation
has finished ends (canceled if a cancel asked for it), and its credentials are
erased, and its webhook events are written (webhook_outbox.py). The engine's
results and the API's cancel both move batches here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import BindParameter, bindparam, case, func, select, update

from service.bulk import BulkStatement
from service.database import DbConnection
from service.models import (
    FINISHED_BATCH_STATUSES,
    TERMINAL_STATUSES,
    BatchStatus,
    OperationStatus,
)
from service.store import batches, operations
from service.webhook_outbox import record_finished

# The batches a statement of batch bookkeeping is about.
BATCH_IDS: BindParameter[str] = bindparam("batch_ids", expanding=True)


async def cancel(connection: DbConnection, batch_id: str, now: float) -> None:
    """Cancels the batch's pending operations and its claims not yet sent, whichever
    replica holds them; it ends as canceled once the operations sent finish."""
    await connection.execute(
        update(batches).where(batches.c.id == batch_id).values(canceled_at=now, updated_at=now)
    )
    await _cancel_pending(connection, now, [batch_id])
    await refresh_batches(connection, now, [batch_id])


async def stop_after_failures(
    connection: DbConnection, now: float, batch_ids: set[str]
) -> list[str]:
    """Of these batches, those that stop on failure: their pending operations and
    unsent claims are canceled, so no replica starts another."""
    if not batch_ids:
        return []
    # Locked in the order a cancel and a claim lock them too (a result group
    # has locked all of its batches already, before its operations).
    stopping = (
        select(batches.c.id)
        .where(batches.c.id.in_(batch_ids), batches.c.stop_on_failure)
        .order_by(batches.c.id)
        .with_for_update()
    )
    stopped = list((await connection.execute(stopping)).scalars())
    await _cancel_pending(connection, now, stopped)
    return stopped


async def _cancel_pending(connection: DbConnection, now: float, batch_ids: list[str]) -> None:
    """Cancels what was never sent: pending operations, and claims not marked sent.

    A claim is marked sent in a statement of its own just before it is sent
    (claims.mark_sent); of that mark and this update, whichever changes the
    row first wins, and the other, re-checking the row, changes nothing.
    """
    await connection.execute(
        update(operations)
        .where(operations.c.batch_id.in_(batch_ids), operations.c.status == OperationStatus.PENDING)
        .values(status=OperationStatus.CANCELED, updated_at=now)
    )
    await connection.execute(
        update(operations)
        .where(
            operations.c.batch_id.in_(batch_ids),
            operations.c.status == OperationStatus.IN_PROGRESS,
            operations.c.sent_at.is_(None),
        )
        .values(
            status=OperationStatus.CANCELED, lease_owner=None, lease_expires_at=None, updated_at=now
        )
    )


_LOCK_BATCHES = (
    select(batches.c.id).where(batches.c.id.in_(BATCH_IDS)).order_by(batches.c.id).with_for_update()
)
_ADD_FINISHED = BulkStatement(
    update(batches)
    .where(batches.c.id == bindparam("batch_id"))
    .values(
        finished_count=batches.c.finished_count + bindparam("added"), updated_at=bindparam("now")
    )
)
_RECOUNT_FINISHED = (
    update(batches)
    .where(batches.c.id.in_(BATCH_IDS))
    .values(
        finished_count=select(func.count())
        .select_from(operations)
        .where(operations.c.batch_id == batches.c.id, operations.c.status.in_(TERMINAL_STATUSES))
        .scalar_subquery(),
        updated_at=bindparam("now"),
    )
)
# A batch with every operation finished ends, and its credentials are erased.
_FINISH_BATCHES = (
    update(batches)
    .where(
        batches.c.id.in_(BATCH_IDS),
        batches.c.finished_count == batches.c.operations_count,
        batches.c.status.not_in(FINISHED_BATCH_STATUSES),
    )
    .values(
        status=case(
            (batches.c.canceled_at.is_not(None), BatchStatus.CANCELED),
            else_=BatchStatus.COMPLETED,
        ),
        sealed_authorization=None,
    )
    .returning(batches.c.id)
)


async def lock_batches(connection: DbConnection, batch_ids: Iterable[str]) -> None:
    """Locks these batches' rows in id order, the order every claim, cancel and
    result group takes them in, so that no two of them deadlock. SQLite's writers
    take turns for whole transactions and need none."""
    if connection.dialect.name != "sqlite":
        await connection.execute(_LOCK_BATCHES, {"batch_ids": sorted(batch_ids)})


async def add_finished(connection: DbConnection, now: float, added: Mapping[str, int]) -> None:
    """Raises finished counts by the results about to be written, in the same
    transaction. Each UPDATE locks the batch's row, and they go in id order: a
    result group's lock on its batches, taken before their operations', as
    cancels take them (claims.record_results)."""
    await _ADD_FINISHED.execute_many(
        connection,
        [
            {"batch_id": batch_id, "added": added[batch_id], "now": now}
            for batch_id in sorted(added)
        ],
    )


async def refresh_batches(
    connection: DbConnection, now: float, recount: Iterable[str], raised: Iterable[str] = ()
) -> list[str]:
    """Recounts finished counts from the statuses (`recount`); finishes these
    batches and those whose counts add_finished raised (`raised`) if they have
    no operation left, erasing their credentials."""
    recounted = sorted(recount)
    ids = sorted({*recounted, *raised})
    if not ids:
        return []
    # Before a recount, lock the batches, in a stable order. Under READ
    # COMMITTED the recount then takes its snapshot after any other replica
    # that was recounting the same batch has committed, so no count misses
    # results. An increment needs no such lock: an UPDATE adds to the latest
    # committed count. SQLite's writers take turns for whole transactions.
    if recounted:
        await lock_batches(connection, ids)
        await connection.execute(_RECOUNT_FINISHED, {"batch_ids": recounted, "now": now})
    finished_batches = await connection.execute(_FINISH_BATCHES, {"batch_ids": ids})
    finished = list(finished_batches.scalars())
    # Their webhook events, in the transaction that finishes them (an outbox).
    await record_finished(connection, now, finished)
    return finished
