"""`GET /v1/batches/{id}/results`: ExportBatchOperations as JSON lines (NDJSON).

One line per operation, in submitted order, each the contract's batch_operation
object; `status[]` keeps only operations in those states. An unfinished batch
exports what is there now.

Flow control: one gRPC message (a bounded page) is turned into lines and written
(and drained) before the next is read, so neither the gateway nor the service
holds more than a page or two, however large the batch. A client that goes
away ends the handler (its write fails, or the runner cancels it), and the
gRPC call is canceled with it, which stops the service's export.

Errors before the first line (401, 404, a bad `status[]`) are the contract's JSON
errors. One after lines were sent cannot change the status any more: the
connection is closed without the body's last chunk, so no client mistakes a cut
export for a whole one.
"""

from __future__ import annotations

import logging

import grpc
from aiohttp import web

from batchd.json_values import dump_json
from batchd.rest_objects import operation_object
from batchd.v1 import batch_pb2
from batchd.vocabulary import OPERATION_STATUSES
from gateway import params
from gateway.backend import batch_service, call_metadata

log = logging.getLogger(__name__)
CONTENT_TYPE = "application/x-ndjson"

ExportCall = grpc.aio.UnaryStreamCall[
    batch_pb2.ExportBatchOperationsRequest, batch_pb2.ExportBatchOperationsResponse
]


async def batch_results(request: web.Request) -> web.StreamResponse:
    statuses = params.statuses(
        request.query, OPERATION_STATUSES, batch_pb2.BATCH_OPERATION_STATUS_UNSPECIFIED
    )
    export = batch_pb2.ExportBatchOperationsRequest(id=request.match_info["id"], statuses=statuses)
    # No deadline: a large export takes as long as the client takes to read it.
    call: ExportCall = batch_service(request).ExportBatchOperations(
        export, metadata=call_metadata(request)
    )
    pages = aiter(call)
    try:
        first = await anext(pages, None)
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
        await response.prepare(request)
        page = first
        try:
            while page is not None:
                await response.write(lines_of(page))
                page = await anext(pages, None)
        except grpc.aio.AioRpcError as error:
            log.warning("an export ended early: %s %s", error.code().name, error.details())
            _cut_off(request)
            return response
        except ConnectionResetError:
            log.debug("the client of a results export went away")
            return response
        await response.write_eof()
        return response
    finally:
        call.cancel()


def lines_of(page: batch_pb2.ExportBatchOperationsResponse) -> bytes:
    # JSON escapes newlines inside strings, so each object stays on its line.
    return b"".join(
        dump_json(operation_object(operation)) + b"\n" for operation in page.batch_operations
    )


def _cut_off(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()
