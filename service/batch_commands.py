"""The commands that change batches: create (idempotent by request id) and cancel."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import grpc
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError

from batchd.logs import REQUEST_ID
from batchd.v1 import batch_pb2
from service import store, validation
from service.auth import Caller
from service.credentials import Sealer
from service.database import Database, DbConnection
from service.engine import queue
from service.errors import ApiError, not_found
from service.models import FINISHED_BATCH_STATUSES, BatchStatus, OperationStatus

# How long a create request id is remembered.
REQUEST_ID_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Created:
    # Rows, or namespaces with the same attributes for what was just inserted.
    batch: Any
    operations: list[Any]
    # True when a repeated request id returned the batch created the first time.
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
    validation.request_id(request.request_id)
    fingerprint = hashlib.sha256(request.batch.SerializeToString(deterministic=True)).hexdigest()
    now = time.time()
    # One read of randomness and one millisecond for the batch and its operations.
    batch_id, *operation_ids = new_ids(1 + len(new_operations))
    batch: dict[str, Any] = {
        "id": batch_id,
        "tenant": caller.tenant,
        "status": BatchStatus.PENDING,
        "operations_count": len(new_operations),
        "finished_count": 0,
        "sealed_authorization": sealer.seal(caller.authorization),
        "sequential": options.sequential,
        "stop_on_failure": options.stop_on_failure,
        "max_concurrency": options.max_concurrency,
        "canceled_at": None,
        "correlation_id": REQUEST_ID.get(),
        "created_at": now,
        "updated_at": now,
    }
    operations = [
        _operation_row(operation_ids[position], batch_id, caller.tenant, position, new, now)
        for position, new in enumerate(new_operations)
    ]
    try:
        async with database.write() as connection:
            if request.request_id:
                earlier = await _earlier_batch(
                    connection, caller, request.request_id, fingerprint, now
                )
                if earlier is not None:
                    return Created(earlier, [], replayed=True)
            await store.insert_batch(connection, batch, operations)
            if request.request_id:
                await store.insert_create_request(
                    connection, caller.tenant, request.request_id, fingerprint, batch_id, now
                )
    except IntegrityError:
        # Another replica stored the same request id first: answer as it did.
        async with database.write() as connection:
            earlier = await _earlier_batch(connection, caller, request.request_id, fingerprint, now)
        if earlier is None:
            raise
        return Created(earlier, [], replayed=True)
    return Created(SimpleNamespace(**batch), [SimpleNamespace(**op) for op in operations])


async def _earlier_batch(
    connection: DbConnection, caller: Caller, request_id: str, fingerprint: str, now: float
) -> Row[Any] | None:
    earlier = await store.get_create_request(connection, caller.tenant, request_id)
    if earlier is None:
        return None
    if earlier.created_at < now - REQUEST_ID_TTL_SECONDS:
        await store.delete_create_request(connection, caller.tenant, request_id)
        return None
    if earlier.fingerprint != fingerprint:
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "batch.idempotency_key.reused",
            "This request id (Idempotency-Key) was already used with a different batch",
        )
    return await store.get_batch(connection, caller.tenant, earlier.batch_id)


def new_ids(count: int) -> list[str]:
    """Version 7 UUIDs (RFC 9562): the millisecond, then 74 random bits, from one
    read of the system's randomness.

    Ids made together sort together, so a batch's operations sit side by side in
    the primary-key index, where every claim and result looks them up; random
    ids put each on a page of its own, which cost a quarter of the execution
    rate at a million stored operations. (Python 3.14's uuid.uuid7 does one.)
    """
    millisecond = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    randomness = os.urandom(10 * count)
    return [
        str(uuid.UUID(int=_as_version_7(millisecond + randomness[start : start + 10])))
        for start in range(0, 10 * count, 10)
    ]


def _as_version_7(raw: bytes) -> int:
    value = int.from_bytes(raw, "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version
    return (value & ~(0x3 << 62)) | (0x2 << 62)  # variant: RFC 9562


def _operation_row(
    operation_id: str,
    batch_id: str,
    tenant: str,
    position: int,
    new: validation.NewOperation,
    now: float,
) -> dict[str, Any]:
    return {
        "id": operation_id,
        "batch_id": batch_id,
        "tenant": tenant,
        "position": position,
        "http_method": new.http_method,
        "path": new.path,
        "query_params": new.query_params,
        "body": new.body,
        "status": OperationStatus.PENDING,
        "response_status": None,
        "response_body": None,
        "failure_reason": None,
        "attempts": 0,
        "lease_owner": None,
        "lease_expires_at": None,
        "lease_generation": 0,
        "created_at": now,
        "updated_at": now,
    }


async def cancel_batch(database: Database, caller: Caller, batch_id: str) -> Row[Any]:
    """Cancels the pending operations; the batch ends as canceled once running ones finish."""
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
        await store.mark_canceled(connection, batch_id, now)
        await queue.cancel_pending(connection, now, [batch_id])
        await queue.refresh_batches(connection, now, [batch_id])
        canceled = await store.get_batch(connection, caller.tenant, batch_id)
    assert canceled is not None
    return canceled
