"""The end of a batch's life: retried into a new batch, deleted, or expired.

A retry copies a finished batch's selected operations into a new batch. An
operation that never got a response may still have reached the upstream, so its
copy is sent under the original's Idempotency-Key, which an upstream keeping
keys answers without running it twice; one that got a response (a 503, a 429)
is sent under its own new id, or such an upstream would replay that failure.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from sqlalchemy import ColumnElement, Row, and_, delete, func, or_, select

from batchd.v1 import batch_pb2
from batchd.vocabulary import OPERATION_STATUS_NAMES
from service import store, validation
from service.auth import Caller
from service.batch_commands import (
    Created,
    Idempotency,
    NewRows,
    insert_idempotently,
    new_batch_row,
    new_ids,
)
from service.credentials import Sealer
from service.database import Database, DbConnection
from service.errors import ApiError, Violation, invalid, not_found
from service.idempotency_keys import create_requests
from service.models import FINISHED_BATCH_STATUSES, BatchOperation, OperationStatus, new_row
from service.store import batches, operations

# What a retry takes when the request names nothing.
DEFAULT_RETRY_STATUSES = (
    OperationStatus.FAILED,
    OperationStatus.TIMED_OUT,
    OperationStatus.CANCELED,
)
_RESPONSE_STATUS = re.compile(r"([1-5])(?:([0-9]{2})|xx)")


def not_finished(batch_id: str, status: str) -> ApiError:
    return ApiError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "batch.not_finished",
        f"Batch {batch_id} has not finished ({status}); wait for it to finish or cancel it",
    )


async def _finished_batch(connection: DbConnection, caller: Caller, batch_id: str) -> Row[Any]:
    batch = await store.get_batch(connection, caller.tenant, batch_id)
    if batch is None:
        raise not_found("batch", batch_id)
    if batch.status not in FINISHED_BATCH_STATUSES:
        raise not_finished(batch_id, batch.status)
    return batch


async def delete_batch(database: Database, caller: Caller, batch_id: str) -> None:
    """Deletes a finished batch whole, in one transaction: a batch holds at most
    BATCH_MAX_OPERATIONS operations, and no read may see it half gone."""
    async with database.write() as connection:
        await _finished_batch(connection, caller, batch_id)
        await connection.execute(delete(operations).where(operations.c.batch_id == batch_id))
        await _delete_batch_rows(connection, [batch_id])


async def _delete_batch_rows(connection: DbConnection, batch_ids: Sequence[str]) -> int:
    """Deletes batches whose operations are gone, with their idempotency keys."""
    await connection.execute(
        delete(create_requests).where(create_requests.c.batch_id.in_(batch_ids))
    )
    deleted = await connection.execute(delete(batches).where(batches.c.id.in_(batch_ids)))
    return deleted.rowcount


# One retention transaction deletes at most this many operations, then the
# batches it emptied (with their keys): about 1,000 rows, a few milliseconds of
# locks that no claim or result of an unfinished batch ever waits for.
OPERATIONS_PER_CHUNK = 900
BATCHES_PER_CHUNK = 50
# pg_try_advisory_xact_lock's key: one replica purges at a time ("batchret").
RETENTION_LOCK_KEY = 0x6261746368726574


@dataclass(frozen=True)
class Purged:
    batches: int = 0
    operations: int = 0

    @property
    def rows(self) -> int:
        return self.batches + self.operations


async def purge_expired_chunk(connection: DbConnection, older_than: float) -> Purged | None:
    """Deletes a chunk of the batches that finished before `older_than`: their next
    operations, and those batches whose operations are all gone. None when another
    replica is purging (PostgreSQL): it holds the lock until its chunk commits."""
    if connection.dialect.name == "postgresql":
        locked = await connection.execute(
            select(func.pg_try_advisory_xact_lock(RETENTION_LOCK_KEY))
        )
        if not locked.scalar_one():
            return None
    expired = list(
        (
            await connection.execute(
                select(batches.c.id)
                .where(
                    batches.c.status.in_(FINISHED_BATCH_STATUSES),
                    batches.c.updated_at < older_than,
                )
                .order_by(batches.c.updated_at)
                .limit(BATCHES_PER_CHUNK)
            )
        ).scalars()
    )
    if not expired:
        return Purged()
    chunk = (
        select(operations.c.id)
        .where(operations.c.batch_id.in_(expired))
        .limit(OPERATIONS_PER_CHUNK)
        .scalar_subquery()
    )
    deleted = (
        await connection.execute(delete(operations).where(operations.c.id.in_(chunk)))
    ).rowcount
    if deleted == OPERATIONS_PER_CHUNK:
        return Purged(operations=deleted)  # maybe more left: the next chunk goes on
    return Purged(await _delete_batch_rows(connection, expired), deleted)


@dataclass(frozen=True)
class Selection:
    """Which operations a retry takes: those in `statuses`, or with a response status
    equal to one of `codes` or in one of the hundreds `classes` (5 for 5xx)."""

    statuses: tuple[str, ...]
    codes: tuple[int, ...] = ()
    classes: tuple[int, ...] = ()

    def condition(self) -> ColumnElement[bool]:
        response = operations.c.response_status
        return or_(
            operations.c.status.in_(self.statuses),
            response.in_(self.codes),
            *(
                and_(response >= hundred * 100, response < hundred * 100 + 100)
                for hundred in self.classes
            ),
        )


def retry_selection(request: batch_pb2.RetryBatchRequest) -> Selection:
    """The request's filters, checked; with none, the default statuses."""
    if not request.statuses and not request.response_statuses:
        return Selection(tuple(DEFAULT_RETRY_STATUSES))
    violations: list[Violation] = []
    statuses = []
    for index, value in enumerate(request.statuses):
        name = OPERATION_STATUS_NAMES.get(value)
        if name is None:
            violations.append(
                Violation(f"statuses[{index}]", "batch.retry.statuses.invalid", "unknown status")
            )
        else:
            statuses.append(name)
    codes, classes = [], []
    for index, raw in enumerate(request.response_statuses):
        match = _RESPONSE_STATUS.fullmatch(raw.strip().lower())
        if match is None:
            violations.append(
                Violation(
                    f"response_statuses[{index}]",
                    "batch.retry.response_statuses.invalid",
                    "must be an HTTP status code (503) or a class (5xx)",
                )
            )
        elif match.group(2) is None:
            classes.append(int(match.group(1)))
        else:
            codes.append(int(raw.strip()))
    if violations:
        raise invalid("batch.retry.invalid", violations)
    return Selection(tuple(statuses), tuple(codes), tuple(classes))


async def retry_batch(
    database: Database, caller: Caller, request: batch_pb2.RetryBatchRequest, sealer: Sealer
) -> Created:
    source_id = validation.object_id("batch", request.id)
    selection = retry_selection(request)
    key = validation.idempotency_key(request.request_id)
    # A retry's key shares create's ids: the fingerprint says which call it was.
    asked = batch_pb2.RetryBatchRequest()
    asked.CopyFrom(request)
    asked.ClearField("request_id")
    asked.ClearField("view")
    asked.id = source_id
    fingerprint = hashlib.sha256(
        b"retry\0" + asked.SerializeToString(deterministic=True)
    ).hexdigest()
    now = time.time()

    async def rows(connection: DbConnection) -> NewRows:
        source = await _finished_batch(connection, caller, source_id)
        selected = await _selected_operations(connection, caller.tenant, source_id, selection)
        if not selected:
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "batch.retry.nothing_selected",
                f"No operation of batch {source_id} matches the retry's statuses",
            )
        return _retry_rows(caller, source, selected, sealer, now)

    return await insert_idempotently(database, caller, Idempotency(key, fingerprint), now, rows)


async def _selected_operations(
    connection: DbConnection, tenant: str, batch_id: str, selection: Selection
) -> Sequence[Row[Any]]:
    query = (
        select(operations)
        .where(
            operations.c.tenant == tenant,
            operations.c.batch_id == batch_id,
            selection.condition(),
        )
        .order_by(operations.c.position)
    )
    return (await connection.execute(query)).all()


def _retry_rows(
    caller: Caller, source: Row[Any], selected: Sequence[Row[Any]], sealer: Sealer, now: float
) -> NewRows:
    batch_id, *operation_ids = new_ids(1 + len(selected))
    # The source's credentials were erased when it finished: the caller's own.
    batch = new_batch_row(
        batch_id,
        caller,
        len(selected),
        sealer,
        source,
        now,
        in_flight_limit=source.in_flight_limit,
        retry_of=source.id,
        # The same work for the same purpose: found by the same metadata filters.
        labels=source.labels,
    )
    copies = [
        new_row(
            BatchOperation,
            id=operation_ids[position],
            batch_id=batch_id,
            tenant=caller.tenant,
            position=position,
            http_method=original.http_method,
            path=original.path,
            query_params=original.query_params,
            body=original.body,
            idempotency_key=_key_to_resend(original),
            created_at=now,
            updated_at=now,
        )
        for position, original in enumerate(selected)
    ]
    return batch, copies


def _key_to_resend(original: Row[Any]) -> str | None:
    """The original's key when it never got a response (it may have got through);
    None, its new id, when a response came (the upstream would replay it)."""
    if original.response_status is not None:
        return None
    return str(original.idempotency_key or original.id)
