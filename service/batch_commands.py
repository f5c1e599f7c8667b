"""The commands that change batches: create (idempotent by its key) and cancel."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol

import grpc
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError

from batchd import tracing
from batchd.logs import REQUEST_ID
from batchd.v1 import batch_pb2
from service import batch_progress, convert, idempotency_keys, store, validation
from service.auth import Caller
from service.credentials import Sealer
from service.database import Database, DbConnection
from service.errors import ApiError, not_found
from service.idempotency_keys import IDEMPOTENCY_KEY_TTL_SECONDS
from service.models import FINISHED_BATCH_STATUSES, Batch, BatchOperation, new_row
from service.outcome_counts import batches_with_counts


@dataclass(frozen=True)
class Created:
    # Rows, or namespaces with the same attributes for what was just inserted.
    batch: Any
    operations: list[Any]
    # True when a repeated idempotency key returned the batch created the first time.
    replayed: bool = False


async def create_batch(
    database: Database,
    caller: Caller,
    request: batch_pb2.CreateBatchRequest,
    sealer: Sealer,
    limits: validation.BatchLimits,
) -> Created:
    new_operations = validation.new_operations(request.batch, limits)
    options = validation.execution_options(request.batch.execution_options)
    labels = validation.metadata(request.batch.metadata)
    # The proto's AIP-155 request_id is CreateBatch's idempotency key.
    idempotency_key = validation.idempotency_key(request.request_id)
    fingerprint = hashlib.sha256(request.batch.SerializeToString(deterministic=True)).hexdigest()
    now = time.time()
    # One read of randomness and one millisecond for the batch and its operations.
    batch_id, *operation_ids = new_ids(1 + len(new_operations))
    limit = validation.in_flight_limit(options, limits)
    batch = new_batch_row(
        batch_id,
        caller,
        len(new_operations),
        sealer,
        options,
        now,
        in_flight_limit=limit,
        labels=labels or None,
    )
    operations = [
        _operation_row(operation_ids[position], batch_id, caller.tenant, position, new, now)
        for position, new in enumerate(new_operations)
    ]

    async def rows(connection: DbConnection) -> NewRows:
        return batch, operations

    return await insert_idempotently(
        database, caller, Idempotency(idempotency_key, fingerprint), now, rows
    )


class Options(Protocol):
    """Execution options, as a request or a stored batch holds them."""

    sequential: bool
    stop_on_failure: bool
    max_concurrency: int


def new_batch_row(
    batch_id: str,
    caller: Caller,
    operations_count: int,
    sealer: Sealer,
    options: Options,
    now: float,
    **values: Any,
) -> dict[str, Any]:
    """A new batch of the caller's, run with the caller's sealed Authorization."""
    return new_row(
        Batch,
        id=batch_id,
        tenant=caller.tenant,
        operations_count=operations_count,
        sealed_authorization=sealer.seal(caller.authorization),
        sequential=options.sequential,
        stop_on_failure=options.stop_on_failure,
        max_concurrency=options.max_concurrency,
        correlation_id=REQUEST_ID.get(),
        traceparent=tracing.current_traceparent(),
        created_at=now,
        updated_at=now,
        **values,
    )


# A new batch row and its operation rows.
NewRows = tuple[dict[str, Any], list[dict[str, Any]]]


@dataclass(frozen=True)
class Idempotency:
    """A call's idempotency key ("" for none) and the fingerprint a repeat must match."""

    key: str
    fingerprint: str


async def insert_idempotently(
    database: Database,
    caller: Caller,
    idempotency: Idempotency,
    now: float,
    rows: Callable[[DbConnection], Awaitable[NewRows]],
) -> Created:
    """Stores the batch `rows` makes (in the write's transaction), unless its key was
    used before: then the batch stored that time, or an error for another request."""
    key, fingerprint = idempotency.key, idempotency.fingerprint
    try:
        async with database.write() as connection:
            if key:
                earlier = await _earlier_batch(connection, caller, key, fingerprint, now)
                if earlier is not None:
                    return Created(earlier, [], replayed=True)
            batch, operations = await rows(connection)
            await store.insert_batch(connection, batch, operations)
            if key:
                await idempotency_keys.remember(
                    connection, caller.tenant, key, fingerprint, batch["id"], now
                )
    except IntegrityError:
        # Another replica stored the same key first: answer as it did.
        async with database.write() as connection:
            earlier = await _earlier_batch(connection, caller, key, fingerprint, now)
        if earlier is None:
            raise
        return Created(earlier, [], replayed=True)
    return Created(SimpleNamespace(**batch), [SimpleNamespace(**op) for op in operations])


async def _earlier_batch(
    connection: DbConnection, caller: Caller, idempotency_key: str, fingerprint: str, now: float
) -> Row[Any] | None:
    earlier = await idempotency_keys.get(connection, caller.tenant, idempotency_key)
    if earlier is None:
        return None
    if earlier.created_at < now - IDEMPOTENCY_KEY_TTL_SECONDS:
        await idempotency_keys.forget(connection, caller.tenant, idempotency_key)
        return None
    if earlier.fingerprint != fingerprint:
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "batch.idempotency_key.reused",
            "This request id (Idempotency-Key) was already used with a different batch",
        )
    return await store.get_batch(connection, caller.tenant, earlier.batch_id)


def new_ids(count: int) -> list[str]:
    """Version 7 UUIDs (RFC 9562) in the order made: the millisecond, a 12-bit
    counter in rand_a (the RFC's method 1), then 62 random bits, from one read of
    the system's randomness. A batch's ids therefore sort in submitted order; past
    4,096 ids the counter rolls over into the next millisecond, as the RFC allows.

    Ids made together sort together, so a batch's operations sit side by side in
    the primary-key index, where every claim and result looks them up; random
    ids put each on a page of its own, which cost a quarter of the execution
    rate at a million stored operations. (Python 3.14's uuid.uuid7 does one.)
    """
    millisecond = time.time_ns() // 1_000_000
    randomness = os.urandom(8 * count)
    return [
        str(uuid.UUID(int=_as_version_7(millisecond, n, randomness[8 * n : 8 * n + 8])))
        for n in range(count)
    ]


def _as_version_7(millisecond: int, n: int, random_bits: bytes) -> int:
    timestamp, counter = millisecond + (n >> 12), n & 0xFFF
    rand_b = int.from_bytes(random_bits, "big") & ((1 << 62) - 1)
    # 48 bits of time, version 7, the counter; variant 0b10 (RFC 9562), rand_b.
    return timestamp << 80 | 0x7 << 76 | counter << 64 | 0x2 << 62 | rand_b


def _operation_row(
    operation_id: str,
    batch_id: str,
    tenant: str,
    position: int,
    new: validation.NewOperation,
    now: float,
) -> dict[str, Any]:
    return new_row(
        BatchOperation,
        id=operation_id,
        batch_id=batch_id,
        tenant=tenant,
        position=position,
        http_method=new.http_method,
        path=new.path,
        query_params=new.query_params,
        body=new.body,
        created_at=now,
        updated_at=now,
    )


async def cancel_batch(database: Database, caller: Caller, batch_id: str) -> batch_pb2.Batch:
    """Cancels the pending operations; the batch ends as canceled once running ones finish.
    The batch as the cancel left it, its counts read in the same transaction."""
    now = time.time()
    async with database.write() as connection:
        batch = await store.get_batch(connection, caller.tenant, batch_id)
        if batch is None:
            raise not_found("batch", batch_id)
        if batch.status in FINISHED_BATCH_STATUSES:
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "batch.not_cancelable",
                f"Batch {batch_id} has already finished ({batch.status}) and cannot be canceled",
            )
        await batch_progress.cancel(connection, batch_id, now)
        canceled = await batches_with_counts(connection, [batch_id], caller.tenant)
    return convert.batch_message(*canceled[batch_id])
