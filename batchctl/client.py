"""BatchService calls over a blocking gRPC channel, and RPC errors as one line."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from types import TracebackType

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from batchd.messages import MAX_PAGE_SIZE, MESSAGE_SIZE_OPTIONS
from batchd.v1 import batch_pb2, batch_pb2_grpc
from batchd.vocabulary import OPERATION_STATUSES

# Unary calls answer fast; a watch lasts as long as its batch, so it has none.
CALL_TIMEOUT_SECONDS = 30.0


def smaller_page(read: int, page_size: int) -> int:
    """At most half the page size, and a divisor of what was read, so that the next
    page starts right after it: after 100 read, pages of 12 would start at 96."""
    return math.gcd(read, page_size // 2)


class BatchClient:
    def __init__(self, target: str, token: str | None) -> None:
        self._channel = grpc.insecure_channel(target, options=MESSAGE_SIZE_OPTIONS)
        self._stub = batch_pb2_grpc.BatchServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def __enter__(self) -> BatchClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._channel.close()

    def create(
        self,
        operations: Sequence[batch_pb2.BatchOperation],
        options: batch_pb2.ExecutionOptions,
        request_id: str,
    ) -> batch_pb2.Batch:
        request = batch_pb2.CreateBatchRequest(
            batch=batch_pb2.Batch(batch_operations=operations, execution_options=options),
            request_id=request_id,
        )
        reply = self._stub.CreateBatch(
            request, metadata=self._metadata, timeout=CALL_TIMEOUT_SECONDS
        )
        batch: batch_pb2.Batch = reply.batch
        return batch

    def get(self, batch_id: str) -> batch_pb2.Batch:
        """The batch with all its operations, in submitted order."""
        request = batch_pb2.GetBatchRequest(id=batch_id, view=batch_pb2.BATCH_VIEW_FULL)
        reply = self._stub.GetBatch(request, metadata=self._metadata, timeout=CALL_TIMEOUT_SECONDS)
        batch: batch_pb2.Batch = reply.batch
        if len(batch.batch_operations) < batch.batch_operations_count:
            # The full view stops at a size budget: page through the rest.
            operations = self._operations_of(batch_id)
            del batch.batch_operations[:]
            batch.batch_operations.extend(sorted(operations, key=lambda op: op.position))
        return batch

    def _operations_of(self, batch_id: str) -> list[batch_pb2.BatchOperation]:
        operations: list[batch_pb2.BatchOperation] = []
        page_size = MAX_PAGE_SIZE
        while True:
            request = batch_pb2.ListBatchOperationsRequest(
                batch_ids=[batch_id], page_size=page_size, page=len(operations) // page_size + 1
            )
            try:
                reply = self._stub.ListBatchOperations(
                    request, metadata=self._metadata, timeout=CALL_TIMEOUT_SECONDS
                )
            except grpc.RpcError as error:
                # The page's stored responses are too large for one reply: ask for fewer.
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT or page_size == 1:
                    raise
                page_size = smaller_page(len(operations), page_size)
                continue
            operations.extend(reply.batch_operations)
            if not reply.batch_operations or len(operations) >= reply.total_size:
                return operations

    def list(self, limit: int) -> batch_pb2.ListBatchesResponse:
        request = batch_pb2.ListBatchesRequest(page_size=limit)
        reply: batch_pb2.ListBatchesResponse = self._stub.ListBatches(
            request, metadata=self._metadata, timeout=CALL_TIMEOUT_SECONDS
        )
        return reply

    def cancel(self, batch_id: str) -> batch_pb2.Batch:
        request = batch_pb2.CancelBatchRequest(id=batch_id)
        reply = self._stub.CancelBatch(
            request, metadata=self._metadata, timeout=CALL_TIMEOUT_SECONDS
        )
        batch: batch_pb2.Batch = reply.batch
        return batch

    def retry(
        self,
        batch_id: str,
        statuses: Sequence[str],
        response_statuses: Sequence[str],
        request_id: str,
    ) -> batch_pb2.Batch:
        request = batch_pb2.RetryBatchRequest(
            id=batch_id,
            statuses=[OPERATION_STATUSES[name] for name in statuses],
            response_statuses=response_statuses,
            request_id=request_id,
        )
        reply = self._stub.RetryBatch(
            request, metadata=self._metadata, timeout=CALL_TIMEOUT_SECONDS
        )
        batch: batch_pb2.Batch = reply.batch
        return batch

    def delete(self, batch_id: str) -> batch_pb2.DeleteBatchResponse:
        request = batch_pb2.DeleteBatchRequest(id=batch_id)
        reply: batch_pb2.DeleteBatchResponse = self._stub.DeleteBatch(
            request, metadata=self._metadata, timeout=CALL_TIMEOUT_SECONDS
        )
        return reply

    def export(
        self, batch_id: str, statuses: Sequence[batch_pb2.BatchOperationStatus]
    ) -> Iterator[batch_pb2.ExportBatchOperationsResponse]:
        """The batch's operations in submitted order, a page at a time; no deadline:
        a large batch takes as long as it takes to write out."""
        pages: Iterator[batch_pb2.ExportBatchOperationsResponse] = self._stub.ExportBatchOperations(
            batch_pb2.ExportBatchOperationsRequest(id=batch_id, statuses=statuses),
            metadata=self._metadata,
        )
        return pages

    def watch(self, batch_id: str) -> Iterator[batch_pb2.WatchBatchResponse]:
        events: Iterator[batch_pb2.WatchBatchResponse] = self._stub.WatchBatch(
            batch_pb2.WatchBatchRequest(id=batch_id), metadata=self._metadata
        )
        return events


def describe_rpc_error(error: grpc.RpcError) -> str:
    """`CODE: message`, with every field violation the service named."""
    if not isinstance(error, grpc.Call):
        return f"RPC failed: {error}"
    line = f"{error.code().name}: {error.details()}"
    violations = _field_violations(error)
    if violations:
        # The message lists at most a few violations; the details have them all.
        line = f"{error.code().name}: " + "; ".join(violations)
    return line


def _field_violations(call: grpc.Call) -> list[str]:
    status = rpc_status.from_call(call)
    if status is None:
        return []
    violations = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations += [f"{v.field}: {v.description}" for v in bad_request.field_violations]
    return violations
