"""`GET /v1/batches/{id}/events`: WatchBatch as Server-Sent Events.

The stream, one event per WatchBatch message, each with an increasing `id:`:

    id: 1
    event: batch
    data: {<batch object>}

    id: 2
    event: batch_operation
    data: {"batch": {<batch object>}, "batch_operation": {<operation object>}}

- The first event is always `batch`: the batch as it is now.
- `batch_operation`: an operation just finished; `batch` is the batch after it
  (its counts include that operation).
- `batch`: the batch itself changed status (the last one is `completed` or `canceled`).
- `error`: the service failed mid-stream, or the gateway is stopping (a 503); `data`
  is the contract's error JSON, and the stream ends. Errors before the first event
  (401, 404) are plain JSON responses.
- A `: keep-alive` comment line after each quiet spell of the keep-alive interval.

The stream ends when the batch has finished. Ids only number the events of one
stream: a reconnecting client starts again from the batch's current state, so
`Last-Event-ID` is not needed (and not read).

Flow control: the next gRPC message is read only after the previous event was
written (and drained), so a slow client slows the gRPC stream rather than
growing a buffer here. A client that goes away cancels the handler (the runner
cancels handlers on disconnect), which cancels the gRPC call.

Shutdown: a stream lasts as long as its batch runs, so the gateway's stop would wait
for it (aiohttp's shutdown timeout, 60 s). The application's on_shutdown ends every
stream at once instead, and a stream asked for after that is a 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aiohttp import web

from batchd.rest_objects import batch_object, operation_object
from batchd.v1 import batch_pb2
from gateway.backend import batch_service, call_metadata
from gateway.errors import ApiProblem, from_rpc_error, internal, unavailable
from gateway.settings import SETTINGS_KEY

log = logging.getLogger(__name__)
KEEP_ALIVE = b": keep-alive\n\n"
_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    # Reverse proxies such as nginx would otherwise hold events back.
    "X-Accel-Buffering": "no",
}

# Set once the application shuts down: every stream ends.
STOPPING_KEY = web.AppKey("event_streams_stopping", asyncio.Event)

WatchCall = grpc.aio.UnaryStreamCall[batch_pb2.WatchBatchRequest, batch_pb2.WatchBatchResponse]
Messages = AsyncIterator[batch_pb2.WatchBatchResponse]


class _Stopping(Exception):
    """The gateway is stopping: the stream ends now."""


async def end_event_streams(app: web.Application) -> None:
    """on_shutdown: every open stream ends at once, so the stop does not wait for them."""
    app[STOPPING_KEY].set()


async def batch_events(request: web.Request) -> web.StreamResponse:
    if request.app[STOPPING_KEY].is_set():
        raise unavailable()
    watch = batch_pb2.WatchBatchRequest(id=request.match_info["id"])
    # No deadline: a watch lasts as long as the batch runs.
    call: WatchCall = batch_service(request).WatchBatch(watch, metadata=call_metadata(request))
    messages = aiter(call)
    try:
        # Before the first message, errors are ordinary JSON error responses.
        first = await anext(messages, None)
        if first is None:
            log.error("WatchBatch ended before its first message")
            raise internal()
        response = web.StreamResponse(headers=_HEADERS)
        await response.prepare(request)
        try:
            await _stream(request, response, messages, first)
        except ConnectionResetError:
            log.debug("the client of a batch event stream went away")
        return response
    finally:
        call.cancel()


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    messages: Messages,
    first: batch_pb2.WatchBatchResponse,
) -> None:
    keep_alive = request.app[SETTINGS_KEY].sse_keep_alive
    stopping = asyncio.ensure_future(request.app[STOPPING_KEY].wait())
    message: batch_pb2.WatchBatchResponse | None = first
    number = 1
    try:
        while message is not None:
            await response.write(event_text(number, message))
            number += 1
            try:
                message = await _next(messages, response, keep_alive, stopping)
            except grpc.aio.AioRpcError as error:
                await _end_with(response, number, from_rpc_error(error))
                return
            except _Stopping:
                await _end_with(response, number, unavailable())
                return
    finally:
        stopping.cancel()


async def _end_with(response: web.StreamResponse, number: int, problem: ApiProblem) -> None:
    await response.write(_event(number, "error", problem.as_json()))


async def _next(
    messages: Messages,
    response: web.StreamResponse,
    keep_alive: float,
    stopping: asyncio.Future[Any],
) -> batch_pb2.WatchBatchResponse | None:
    """The next message or None at the end, with a keep-alive comment after each quiet spell;
    raises _Stopping once the gateway stops."""
    # One read for the whole wait: a read cancelled by a timeout would end the stream.
    read = asyncio.ensure_future(anext(messages, None))
    waits: set[asyncio.Future[Any]] = {read, stopping}
    try:
        while True:
            done, _ = await asyncio.wait(
                waits, timeout=keep_alive, return_when=asyncio.FIRST_COMPLETED
            )
            if read in done:
                return read.result()
            if stopping in done:
                raise _Stopping
            await response.write(KEEP_ALIVE)
    finally:
        read.cancel()


def event_text(number: int, message: batch_pb2.WatchBatchResponse) -> bytes:
    batch = batch_object(message.batch)
    if not message.HasField("batch_operation"):
        return _event(number, "batch", batch)
    operation = operation_object(message.batch_operation)
    return _event(number, "batch_operation", {"batch": batch, "batch_operation": operation})


def _event(number: int, name: str, data: dict[str, Any]) -> bytes:
    # json.dumps escapes newlines, so the data fits one `data:` line.
    return f"id: {number}\nevent: {name}\ndata: {json.dumps(data)}\n\n".encode()
