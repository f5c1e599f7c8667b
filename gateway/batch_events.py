"""`GET /v1/batches/{id}/events`: WatchBatch as Server-Sent Events.

The stream starts with `retry: 2000` (how long a browser's EventSource waits to
reconnect), then one event per WatchBatch message:

    id: <cursor>/<batch status>
    event: batch
    data: {<batch object>}

    id: <cursor>/<batch status>
    event: batch_operation
    data: {"batch": {<batch object>}, "batch_operation": {<operation object>}}

- The first event is `batch`: the batch as it is now.
- `batch_operation`: an operation just finished; `batch` is the batch after it
  (its counts include that operation).
- `batch`: the batch itself changed status (the last one is `completed` or `canceled`).
- `end`: the last event of a stream that is complete (the batch finished, or was
  deleted); `data` is the batch as last seen. A client closes its EventSource on it.
- `error`: the service failed mid-stream, or the gateway is stopping (a 503); `data`
  is the contract's error JSON, and the stream ends: reconnect to resume.
  Errors before the first event (401, 404) are plain JSON responses.
- A `: keep-alive` comment line after each quiet spell of the keep-alive interval.

Resuming: an event's id is where the stream stands: the cursor is the id of the
last operation event sent (the batch's own id before any), then the batch's
status. A client that reconnects with `Last-Event-ID` (EventSource does) gets the
operations that finished after the cursor, none twice (WatchBatch's
`resume_after`); the batch's state first only when its status is not the one the
id names. A finished batch whose stream had nothing left to send answers `204 No
Content`, which stops an EventSource from reconnecting. A Last-Event-ID that no
stream of this batch sent is a 400.

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
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web

from batchd.json_values import dump_json
from batchd.rest_objects import batch_object, operation_object
from batchd.v1 import batch_pb2
from batchd.vocabulary import BATCH_STATUSES
from gateway.backend import batch_service, call_metadata
from gateway.errors import bad_request, from_rpc_error, internal, unavailable
from gateway.settings import SETTINGS_KEY

log = logging.getLogger(__name__)
KEEP_ALIVE = b": keep-alive\n\n"
# How long an EventSource waits before it reconnects (its default is the browser's own).
RETRY = b"retry: 2000\n\n"
# A batch in these statuses changes no more.
_FINISHED = ("completed", "canceled")
# The service's code for a resume_after that names nothing it sent.
_RESUME_REFUSED = "watch.resume_after.invalid"
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


@dataclass
class Position:
    """Where a stream stands: the last operation event's id (the batch's before any)
    and the batch's status; an event's id says it, for a reconnect to resume from."""

    cursor: str
    status: str

    def event_id(self) -> str:
        return f"{self.cursor}/{self.status}"

    @classmethod
    def parse(cls, last_event_id: str) -> Position:
        cursor, _, status = last_event_id.partition("/")
        try:
            canonical = str(uuid.UUID(cursor))
        except ValueError:
            canonical = ""
        if canonical != cursor or status not in BATCH_STATUSES:
            raise bad_request("Last-Event-ID is not an event id of a batch's stream")
        return cls(cursor, status)

    def advance(self, message: batch_pb2.WatchBatchResponse) -> None:
        if message.HasField("batch_operation"):
            self.cursor = message.batch_operation.id
        self.status = batch_object(message.batch)["status"]


async def end_event_streams(app: web.Application) -> None:
    """on_shutdown: every open stream ends at once, so the stop does not wait for them."""
    app[STOPPING_KEY].set()


async def batch_events(request: web.Request) -> web.StreamResponse:
    if request.app[STOPPING_KEY].is_set():
        raise unavailable()
    last_event_id = request.headers.get("Last-Event-ID", "")
    resumed = Position.parse(last_event_id) if last_event_id else None
    watch = batch_pb2.WatchBatchRequest(
        id=request.match_info["id"], resume_after=resumed.cursor if resumed else ""
    )
    # No deadline: a watch lasts as long as the batch runs.
    call: WatchCall = batch_service(request).WatchBatch(watch, metadata=call_metadata(request))
    messages = aiter(call)
    try:
        # Before the first message, errors are ordinary JSON error responses.
        first = await _first(messages)
        position = resumed or Position(first.batch.id, batch_object(first.batch)["status"])
        pending: list[batch_pb2.WatchBatchResponse] = [first]
        if resumed is not None and batch_object(first.batch)["status"] == resumed.status:
            # The client saw the batch in this state: only what happened since is news.
            pending = []
            if resumed.status in _FINISHED:
                news = await anext(messages, None)
                if news is None:
                    return web.Response(status=204)  # all sent: EventSource stops here
                pending = [news]
        response = web.StreamResponse(headers=_HEADERS)
        await response.prepare(request)
        try:
            await response.write(RETRY)
            await _stream(request, response, messages, pending, position)
        except ConnectionResetError:
            log.debug("the client of a batch event stream went away")
        return response
    finally:
        call.cancel()


async def _first(messages: Messages) -> batch_pb2.WatchBatchResponse:
    try:
        first = await anext(messages, None)
    except grpc.aio.AioRpcError as error:
        problem = from_rpc_error(error)
        if problem.code == _RESUME_REFUSED:
            raise bad_request("Last-Event-ID names no event of this batch's stream") from None
        raise
    if first is None:
        log.error("WatchBatch ended before its first message")
        raise internal()
    return first


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    messages: Messages,
    pending: list[batch_pb2.WatchBatchResponse],
    position: Position,
) -> None:
    keep_alive = request.app[SETTINGS_KEY].sse_keep_alive
    stopping = asyncio.ensure_future(request.app[STOPPING_KEY].wait())
    last_batch = None
    try:
        while True:
            for message in pending:
                position.advance(message)
                last_batch = message.batch
                await response.write(event_text(position.event_id(), message))
            try:
                following = await _next(messages, response, keep_alive, stopping)
            except grpc.aio.AioRpcError as error:
                await _end_with(response, position, "error", from_rpc_error(error).as_json())
                return
            except _Stopping:
                await _end_with(response, position, "error", unavailable().as_json())
                return
            if following is None:
                end = {} if last_batch is None else batch_object(last_batch)
                await _end_with(response, position, "end", end)
                return
            pending = [following]
    finally:
        stopping.cancel()


async def _end_with(
    response: web.StreamResponse, position: Position, name: str, data: dict[str, Any]
) -> None:
    await response.write(_event(position.event_id(), name, data))


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


def event_text(event_id: str, message: batch_pb2.WatchBatchResponse) -> bytes:
    batch = batch_object(message.batch)
    if not message.HasField("batch_operation"):
        return _event(event_id, "batch", batch)
    operation = operation_object(message.batch_operation)
    return _event(event_id, "batch_operation", {"batch": batch, "batch_operation": operation})


def _event(event_id: str, name: str, data: dict[str, Any]) -> bytes:
    # JSON escapes newlines, so the data fits one `data:` line.
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), name.encode(), dump_json(data))
