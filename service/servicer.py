"""BatchService over gRPC: validates, authorizes and stores; the engine executes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Select

from batchd.v1 import batch_pb2, batch_pb2_grpc
from batchd.vocabulary import BATCH_STATUS_NAMES, OPERATION_STATUS_NAMES
from service import convert, metrics, rate_buckets, store, validation
from service.auth import Tenants
from service.batch_commands import Created, cancel_batch, create_batch
from service.batch_view import Budget, batch_messages, operations_reply
from service.credentials import Sealer
from service.database import Database
from service.errors import not_found
from service.export import export_pages
from service.lifecycle import delete_batch, retry_batch
from service.rate_limit import CreateRateLimiter
from service.rpc_scope import Context, current_caller
from service.signals import Signals
from service.stream_slots import StreamLimits, StreamSlots
from service.watch import WatchFeed
from service.webhook_rpcs import WebhookEndpointRpcs

# The finished statuses, as messages carry them.
FINISHED_BATCH_MESSAGE_STATUSES = (
    batch_pb2.BATCH_STATUS_COMPLETED,
    batch_pb2.BATCH_STATUS_CANCELED,
)


class BatchServicer(WebhookEndpointRpcs, batch_pb2_grpc.BatchServiceServicer):
    """The methods run inside the RPC scope (service/rpc_scope.py): it authenticates
    the caller, whom current_caller() returns, and turns what they raise into statuses.

    `tenants` is who may call: the server builds the scope with it."""

    def __init__(
        self,
        database: Database,
        tenants: Tenants,
        sealer: Sealer,
        limits: validation.BatchLimits,
        signals: Signals,
        create_rate_limiter: CreateRateLimiter,
        stream_limits: StreamLimits,
    ) -> None:
        self.database = database
        self.tenants = tenants
        self.sealer = sealer
        self.limits = limits
        self.signals = signals
        self.create_rate_limiter = create_rate_limiter
        self.streams = StreamSlots(stream_limits)
        self.watches = WatchFeed(database, signals, self.streams)

    async def CreateBatch(
        self, request: batch_pb2.CreateBatchRequest, context: Context
    ) -> batch_pb2.CreateBatchResponse:
        caller = current_caller()
        self.create_rate_limiter.check(caller.tenant)
        created = await create_batch(self.database, caller, request, self.sealer, self.limits)
        return batch_pb2.CreateBatchResponse(
            batch=await self._created_message(created, request.view)
        )

    async def _created_message(
        self, created: Created, view: batch_pb2.BatchView
    ) -> batch_pb2.Batch:
        """A new batch as its creator sees it; a replayed one as it is now."""
        if created.replayed:
            async with self.database.read() as connection:
                [message] = await batch_messages(
                    connection, current_caller().tenant, [created.batch.id], view
                )
            return message
        self.signals.work_available()
        message = convert.batch_message(created.batch)
        if view == batch_pb2.BATCH_VIEW_FULL:
            Budget().inline(message, created.operations)
        return message

    async def CancelBatch(
        self, request: batch_pb2.CancelBatchRequest, context: Context
    ) -> batch_pb2.CancelBatchResponse:
        caller = current_caller()
        batch_id = validation.object_id("batch", request.id)
        batch = await cancel_batch(self.database, caller, batch_id)
        self.signals.batch_canceled(batch_id)
        return batch_pb2.CancelBatchResponse(batch=batch)

    async def DeleteBatch(
        self, request: batch_pb2.DeleteBatchRequest, context: Context
    ) -> batch_pb2.DeleteBatchResponse:
        batch_id = validation.object_id("batch", request.id)
        await delete_batch(self.database, current_caller(), batch_id)
        return batch_pb2.DeleteBatchResponse(id=batch_id)

    async def RetryBatch(
        self, request: batch_pb2.RetryBatchRequest, context: Context
    ) -> batch_pb2.RetryBatchResponse:
        caller = current_caller()
        self.create_rate_limiter.check(caller.tenant)
        created = await retry_batch(self.database, caller, request, self.sealer)
        return batch_pb2.RetryBatchResponse(
            batch=await self._created_message(created, request.view)
        )

    async def WatchBatch(
        self, request: batch_pb2.WatchBatchRequest, context: Context
    ) -> AsyncIterator[batch_pb2.WatchBatchResponse]:
        caller = current_caller()
        batch_id = validation.object_id("batch", request.id)
        metrics.WATCH_STREAMS.inc()
        try:
            watch = self.watches.watch(caller.tenant, batch_id, request.resume_after)
            async for event in watch:
                yield event
        finally:
            metrics.WATCH_STREAMS.dec()

    async def ExportBatchOperations(
        self, request: batch_pb2.ExportBatchOperationsRequest, context: Context
    ) -> AsyncIterator[batch_pb2.ExportBatchOperationsResponse]:
        caller = current_caller()
        batch_id = validation.object_id("batch", request.id)
        statuses = validation.enum_names(request.statuses, OPERATION_STATUS_NAMES, "statuses")
        with self.streams.hold(caller.tenant, "export"):
            metrics.EXPORT_STREAMS.inc()
            try:
                async for page in export_pages(self.database, caller.tenant, batch_id, statuses):
                    yield page
            finally:
                metrics.EXPORT_STREAMS.dec()

    async def GetBatch(
        self, request: batch_pb2.GetBatchRequest, context: Context
    ) -> batch_pb2.GetBatchResponse:
        caller = current_caller()
        batch_id = validation.object_id("batch", request.id)
        async with self.database.read() as connection:
            found = await batch_messages(connection, caller.tenant, [batch_id], request.view)
            if not found:
                raise not_found("batch", request.id)
            [message] = found
            # A finished batch waits for nothing, and costs no read.
            finished = message.status in FINISHED_BATCH_MESSAGE_STATUSES
            pauses = {} if finished else await rate_buckets.pauses_of(connection, [caller.tenant])
        return batch_pb2.GetBatchResponse(
            batch=convert.hold_back(message, pauses.get(caller.tenant))
        )

    async def ListBatches(
        self, request: batch_pb2.ListBatchesRequest, context: Context
    ) -> batch_pb2.ListBatchesResponse:
        caller = current_caller()
        query = validation.list_query(request, "ids", BATCH_STATUS_NAMES)
        async with self.database.read() as connection:
            keys, total = await store.list_batches(
                connection,
                caller.tenant,
                query.ids,
                query.statuses,
                query.page,
                metadata=validation.metadata(request.metadata, "list"),
                columns=[store.batches.c.id],
            )
            # Read again with their counts, in one statement (a batch deleted since
            # the page was listed drops out).
            ids = [key.id for key in keys]
            messages = await batch_messages(connection, caller.tenant, ids, request.view)
        return batch_pb2.ListBatchesResponse(batches=messages, total_size=total)

    async def GetBatchOperation(
        self, request: batch_pb2.GetBatchOperationRequest, context: Context
    ) -> batch_pb2.GetBatchOperationResponse:
        row = await self._owned("batch_operation", store.OPERATION_BY_ID, request.id)
        reply = batch_pb2.GetBatchOperationResponse()
        convert.fill_operation(reply.batch_operation, row)
        return reply

    async def ListBatchOperations(
        self, request: batch_pb2.ListBatchOperationsRequest, context: Context
    ) -> batch_pb2.ListBatchOperationsResponse:
        caller = current_caller()
        query = validation.list_query(
            request, "batch_ids", OPERATION_STATUS_NAMES, by_position=True
        )
        async with self.database.read() as connection:
            keys, total = await store.list_operations(
                connection,
                caller.tenant,
                query.ids,
                query.statuses,
                query.page,
                columns=[store.operations.c.id],
            )
            return await operations_reply(connection, [key.id for key in keys], total)

    async def _owned(self, kind: str, lookup: Select[Any], raw_id: str) -> Any:
        """The caller's `kind` with this id, by a prepared lookup; else NOT_FOUND."""
        object_id = validation.object_id(kind, raw_id)
        parameters = {"id": object_id, "tenant": current_caller().tenant}
        row = await self.database.fetch_one(lookup, parameters)
        if row is None:
            raise not_found(kind, raw_id)
        return row
