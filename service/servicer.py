"""BatchService over gRPC: validates, authorizes and stores; the engine executes."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc._cython.cygrpc import ExecuteBatchError  # type: ignore[import-not-found]

from batchd.messages import MAX_MESSAGE_BYTES
from batchd.v1 import batch_pb2, batch_pb2_grpc
from batchd.vocabulary import BATCH_STATUS_NAMES, OPERATION_STATUS_NAMES
from service import convert, metrics, store, validation
from service.auth import Caller, Tenants
from service.batch_commands import cancel_batch, create_batch
from service.batch_view import Budget, batch_messages
from service.credentials import Sealer
from service.database import Database
from service.errors import not_found
from service.rate_limit import CreateRateLimiter
from service.rpc_scope import rpc_scope
from service.watch import Changes, watch_batch

Request = TypeVar("Request")
Response = TypeVar("Response")


def rpc(
    method: Callable[[BatchServicer, Request, Caller], Awaitable[Response]],
) -> Callable[[BatchServicer, Request, grpc.aio.ServicerContext[Any, Any]], Awaitable[Response]]:
    """Runs a unary method inside the RPC scope, for an authenticated caller."""

    @functools.wraps(method)
    async def handler(
        self: BatchServicer, request: Request, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Response:
        async with rpc_scope(method.__name__, context):
            return await method(self, request, self.tenants.authenticate(context))
        raise AssertionError("unreachable: errors abort the call")

    return handler


class BatchServicer(batch_pb2_grpc.BatchServiceServicer):
    def __init__(
        self,
        database: Database,
        tenants: Tenants,
        sealer: Sealer,
        limits: validation.BatchLimits,
        changes: Changes,
        create_rate_limiter: CreateRateLimiter,
        on_batch_created: Callable[[], None] = lambda: None,
        on_batch_canceled: Callable[[str], None] = lambda batch_id: None,
    ) -> None:
        self.database = database
        self.tenants = tenants
        self.sealer = sealer
        self.limits = limits
        self.on_batch_created = on_batch_created
        self.on_batch_canceled = on_batch_canceled
        self.changes = changes
        self.create_rate_limiter = create_rate_limiter

    @rpc
    async def CreateBatch(
        self, request: batch_pb2.CreateBatchRequest, caller: Caller
    ) -> batch_pb2.CreateBatchResponse:
        self.create_rate_limiter.check(caller.tenant)
        created = await create_batch(self.database, caller, request, self.sealer, self.limits)
        if created.replayed:
            async with self.database.read() as connection:
                [message] = await batch_messages(
                    connection, caller.tenant, [created.batch], request.view
                )
            return batch_pb2.CreateBatchResponse(batch=message)
        self.on_batch_created()
        message = convert.batch_message(created.batch)
        if request.view == batch_pb2.BATCH_VIEW_FULL:
            Budget().inline(message, created.operations)
        return batch_pb2.CreateBatchResponse(batch=message)

    @rpc
    async def CancelBatch(
        self, request: batch_pb2.CancelBatchRequest, caller: Caller
    ) -> batch_pb2.CancelBatchResponse:
        batch_id = validation.object_id("batch", request.id)
        batch = await cancel_batch(self.database, caller, batch_id)
        self.on_batch_canceled(batch_id)
        self.changes.notify()
        return batch_pb2.CancelBatchResponse(batch=convert.batch_message(batch))

    async def WatchBatch(
        self, request: batch_pb2.WatchBatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        # Written, not yielded: grpc abandons a generator handler cancelled at its `yield`,
        # and the garbage collector closes it later in another context, where
        # rpc_scope's REQUEST_ID.reset fails (and the watch gauge waits for that).
        async with rpc_scope("WatchBatch", context):
            caller = self.tenants.authenticate(context)
            batch_id = validation.object_id("batch", request.id)
            metrics.WATCH_STREAMS.inc()
            try:
                async for event in watch_batch(
                    self.database, self.changes, caller.tenant, batch_id
                ):
                    await _write(context, event)
            finally:
                metrics.WATCH_STREAMS.dec()

    @rpc
    async def GetBatch(
        self, request: batch_pb2.GetBatchRequest, caller: Caller
    ) -> batch_pb2.GetBatchResponse:
        batch_id = validation.object_id("batch", request.id)
        row = await self.database.fetch_one(
            store.BATCH_BY_ID, {"id": batch_id, "tenant": caller.tenant}
        )
        if row is None:
            raise not_found("batch", request.id)
        if request.view != batch_pb2.BATCH_VIEW_FULL:
            return batch_pb2.GetBatchResponse(batch=convert.batch_message(row))
        async with self.database.read() as connection:
            [message] = await batch_messages(connection, caller.tenant, [row], request.view)
        return batch_pb2.GetBatchResponse(batch=message)

    @rpc
    async def ListBatches(
        self, request: batch_pb2.ListBatchesRequest, caller: Caller
    ) -> batch_pb2.ListBatchesResponse:
        page = validation.page_request(request.page_size, request.page, request.order_by)
        ids = validation.filter_ids("ids", request.ids)
        statuses = validation.enum_names(request.statuses, BATCH_STATUS_NAMES, "statuses")
        async with self.database.read() as connection:
            rows, total = await store.list_batches(connection, caller.tenant, ids, statuses, page)
            messages = await batch_messages(connection, caller.tenant, rows, request.view)
        return batch_pb2.ListBatchesResponse(batches=messages, total_size=total)

    @rpc
    async def GetBatchOperation(
        self, request: batch_pb2.GetBatchOperationRequest, caller: Caller
    ) -> batch_pb2.GetBatchOperationResponse:
        operation_id = validation.object_id("batch_operation", request.id)
        row = await self.database.fetch_one(
            store.OPERATION_BY_ID, {"id": operation_id, "tenant": caller.tenant}
        )
        if row is None:
            raise not_found("batch_operation", request.id)
        return batch_pb2.GetBatchOperationResponse(batch_operation=convert.operation_message(row))

    @rpc
    async def ListBatchOperations(
        self, request: batch_pb2.ListBatchOperationsRequest, caller: Caller
    ) -> batch_pb2.ListBatchOperationsResponse:
        page = validation.page_request(request.page_size, request.page, request.order_by)
        batch_ids = validation.filter_ids("batch_ids", request.batch_ids)
        statuses = validation.enum_names(request.statuses, OPERATION_STATUS_NAMES, "statuses")
        async with self.database.read() as connection:
            rows, total = await store.list_operations(
                connection, caller.tenant, batch_ids, statuses, page
            )
        reply = batch_pb2.ListBatchOperationsResponse(
            batch_operations=[convert.operation_message(row) for row in rows], total_size=total
        )
        if reply.ByteSize() > MAX_MESSAGE_BYTES:
            # gRPC would fail the send itself, as RESOURCE_EXHAUSTED: "try later".
            raise validation.page_too_large()
        return reply


async def _write(context: grpc.aio.ServicerContext[Any, Any], message: Any) -> None:
    """context.write, where a send that fails (the client went away, before grpc says it is
    cancelled) is a cancellation: grpc's own generator path ignores that error too."""
    try:
        await context.write(message)
    except ExecuteBatchError:
        raise asyncio.CancelledError from None
