"""One handler per REST endpoint: parse, call BatchService, present the reply."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2

from batchd.rest_objects import JSONObject, batch_object, list_object, operation_object
from batchd.v1 import batch_pb2
from batchd.vocabulary import BATCH_STATUSES, OPERATION_STATUSES, SERVICE_NAME
from gateway import conditional, params
from gateway.backend import BACKEND_KEY, batch_service, call_options
from gateway.batch_body import create_request
from gateway.errors import unavailable
from gateway.json_responses import json_response
from gateway.request_body import read_body
from gateway.retry_body import retry_request

BATCH_EXPANDS = {"batch_operations", "outcome_counts"}
OPERATION_EXPANDS = {"batch"}


def _view(expand: set[str]) -> batch_pb2.BatchView:
    return batch_pb2.BATCH_VIEW_FULL if "batch_operations" in expand else batch_pb2.BATCH_VIEW_BASIC


def _shown(batch: batch_pb2.Batch, expand: set[str]) -> JSONObject:
    """The batch with what `expand[]` asked for."""
    return batch_object(
        batch,
        with_operations="batch_operations" in expand,
        with_outcome_counts="outcome_counts" in expand,
    )


async def create_batch(request: web.Request) -> web.Response:
    expand = params.expansions(request.query, BATCH_EXPANDS)
    request_id = params.idempotency_key(request.headers)
    # Parsing and converting up to 10 MiB takes a while: off the event loop.
    call = await asyncio.to_thread(
        create_request, await read_body(request), _view(expand), request_id
    )
    reply = await batch_service(request).CreateBatch(call, **call_options(request))
    return json_response(_shown(reply.batch, expand))


async def cancel_batch(request: web.Request) -> web.Response:
    """Pending operations are never sent; running ones finish. A finished batch is a 422."""
    call = batch_pb2.CancelBatchRequest(id=request.match_info["id"])
    reply = await batch_service(request).CancelBatch(call, **call_options(request))
    return json_response(batch_object(reply.batch))


async def delete_batch(request: web.Request) -> web.Response:
    """Only a finished batch; afterwards it and its operations are a 404."""
    call = batch_pb2.DeleteBatchRequest(id=request.match_info["id"])
    reply = await batch_service(request).DeleteBatch(call, **call_options(request))
    return json_response({"id": reply.id, "object": "batch", "deleted": True})


async def retry_batch(request: web.Request) -> web.Response:
    """A new batch of a finished batch's failed operations (or those the body selects).
    Its reply adds the extension key `retry_of`, the source batch's id."""
    expand = params.expansions(request.query, BATCH_EXPANDS)
    request_id = params.idempotency_key(request.headers)
    call = retry_request(
        request.match_info["id"], await read_body(request), _view(expand), request_id
    )
    reply = await batch_service(request).RetryBatch(call, **call_options(request))
    return json_response({**_shown(reply.batch, expand), "retry_of": reply.batch.retry_of})


@dataclass(frozen=True)
class Listing:
    """A list endpoint's page, and the List request fields it and the filters make."""

    page: params.Page
    fields: dict[str, Any]

    def response(self, request: web.Request, data: list[JSONObject], total: int) -> web.Response:
        page = self.page
        return conditional.json_response(
            request, list_object(data, total, page.limit, page.page, request.path)
        )


def listing(
    request: web.Request, ids: str, enums: Mapping[str, params.Status], unspecified: params.Status
) -> Listing:
    """`limit`, `page`, `sort`, the id filter `ids` names and `status[]`."""
    page = params.page_of(request.query)
    fields = {
        "page_size": page.limit,
        "page": page.page,
        "order_by": page.order_by,
        ids: params.uuids(request.query, ids),
        "statuses": params.statuses(request.query, enums, unspecified),
    }
    return Listing(page, fields)


async def list_batches(request: web.Request) -> web.Response:
    """Also filtered by `metadata[key]=value`, each key at most once."""
    expand = params.expansions(request.query, BATCH_EXPANDS)
    found = listing(request, "ids", BATCH_STATUSES, batch_pb2.BATCH_STATUS_UNSPECIFIED)
    call = batch_pb2.ListBatchesRequest(
        **found.fields, view=_view(expand), metadata=params.metadata_filter(request.query)
    )
    reply = await batch_service(request).ListBatches(call, **call_options(request))
    data = [_shown(batch, expand) for batch in reply.batches]
    return found.response(request, data, reply.total_size)


async def get_batch(request: web.Request) -> web.Response:
    expand = params.expansions(request.query, BATCH_EXPANDS)
    call = batch_pb2.GetBatchRequest(id=request.match_info["id"], view=_view(expand))
    reply = await batch_service(request).GetBatch(call, **call_options(request))
    return conditional.json_response(request, _shown(reply.batch, expand))


async def list_operations(request: web.Request) -> web.Response:
    expand = params.expansions(request.query, OPERATION_EXPANDS)
    found = listing(
        request, "batch_ids", OPERATION_STATUSES, batch_pb2.BATCH_OPERATION_STATUS_UNSPECIFIED
    )
    call = batch_pb2.ListBatchOperationsRequest(**found.fields)
    reply = await batch_service(request).ListBatchOperations(call, **call_options(request))
    operations = reply.batch_operations
    batches = await _batches_by_id(request, {op.batch_id for op in operations}) if expand else {}
    data = [operation_object(op, batches.get(op.batch_id)) for op in operations]
    return found.response(request, data, reply.total_size)


async def get_operation(request: web.Request) -> web.Response:
    expand = params.expansions(request.query, OPERATION_EXPANDS)
    call = batch_pb2.GetBatchOperationRequest(id=request.match_info["id"])
    reply = await batch_service(request).GetBatchOperation(call, **call_options(request))
    operation = reply.batch_operation
    batches = await _batches_by_id(request, {operation.batch_id}) if expand else {}
    return conditional.json_response(
        request, operation_object(operation, batches.get(operation.batch_id))
    )


async def _batches_by_id(request: web.Request, ids: set[str]) -> dict[str, JSONObject]:
    """The batches of a page of operations (at most 100), in one call."""
    if not ids:
        return {}
    call = batch_pb2.ListBatchesRequest(ids=sorted(ids), page_size=len(ids))
    reply = await batch_service(request).ListBatches(call, **call_options(request))
    return {batch.id: batch_object(batch) for batch in reply.batches}


async def healthz(request: web.Request) -> web.Response:
    """Healthy only when the gRPC backend says it is serving."""
    check = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
    backend = request.app[BACKEND_KEY]
    try:
        reply = await backend.health.Check(check, timeout=backend.timeout)
    except grpc.aio.AioRpcError:
        raise unavailable() from None
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise unavailable()
    return json_response({"status": "ok"})
