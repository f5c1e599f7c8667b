"""What every BatchService RPC goes through, unary or streaming: a server interceptor.

As in the grpc repository's async interceptor example, the interceptor publishes
what the handler needs in context variables: the request id (`batchd.logs.REQUEST_ID`,
which every log line carries) and the authenticated caller (`current_caller()`).
Around the handler it maps errors (an ApiError becomes its rich status, a database
error UNAVAILABLE or INTERNAL, anything else INTERNAL; no trace ever reaches the
client), counts the call in the metrics and logs one event for it.

grpc decodes a request before any handler or interceptor runs, and answers a
decoding failure UNKNOWN with the exception's class name. So the interceptor
installs a request deserializer of its own that turns bytes that are no valid
message (or nest deeper than protobuf parses) into an `Undecodable`, which the
wrapped handler answers INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

import grpc
from google.protobuf.message import DecodeError
from grpc._cython.cygrpc import ExecuteBatchError  # type: ignore[import-not-found]
from sqlalchemy.exc import StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from batchd.logs import REQUEST_ID, REQUEST_ID_METADATA, clean_request_id, fresh_request_id
from batchd.vocabulary import SERVICE_NAME
from service import metrics
from service.auth import Caller, Tenants
from service.database import statement_refused
from service.errors import ApiError

log = logging.getLogger("batchd.rpc")
DATABASE_UNAVAILABLE = "the database is unavailable; retry later"
INTERNAL_ERROR = "internal error; the request id is in the service log"
METHOD_PREFIX = f"/{SERVICE_NAME}/"

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
if TYPE_CHECKING:  # the stubs make these generic; grpc's classes are not, at run time
    ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    ServerInterceptor = grpc.aio.ServerInterceptor
_CALLER: ContextVar[Caller] = ContextVar("caller")


def current_caller() -> Caller:
    """The authenticated caller of the RPC being handled."""
    return _CALLER.get()


class Undecodable:
    """What the request deserializer returns for bytes that are no valid request."""


def malformed_request(name: str) -> ApiError:
    return ApiError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "request.malformed",
        f"the request is not a valid {name} request message (or nests too deep)",
    )


def _decoding(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, RecursionError):
            return Undecodable()

    return deserialize


class RpcScopeInterceptor(ServerInterceptor):
    """Wraps every BatchService method; health and reflection pass untouched."""

    def __init__(self, tenants: Tenants, innermost: bool = True) -> None:
        """`innermost`: no interceptor runs after this one (tracing's wraps each call anew)."""
        self.tenants = tenants
        self.innermost = innermost
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method = handler_call_details.method
        # Innermost, what the continuation finds for a method is grpc's own handler, the
        # same on every call: once wrapped, it is answered without looking it up again.
        if self.innermost and (wrapped := self._wrapped.get(method)) is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or not method.startswith(METHOD_PREFIX):
            return handler
        if method not in self._wrapped:
            self._wrapped[method] = self._wrap(method.removeprefix(METHOD_PREFIX), handler)
        return self._wrapped[method]

    def _wrap(self, name: str, handler: Handler) -> Handler:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(name, handler.unary_unary),
                _decoding(handler.request_deserializer),
                handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(name, handler.unary_stream),
                _decoding(handler.request_deserializer),
                handler.response_serializer,
            )
        raise TypeError(f"{name}: BatchService has no client-streaming methods")

    def _unary(self, name: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def unary(request: Any, context: Context) -> Any:
            scope = _Scope(name, context)
            try:
                scope.authenticate(self.tenants)
                scope.check_decoded(request)
                return await behavior(request, context)
            except BaseException as error:
                await scope.fail(error)
            finally:
                scope.close()

        return unary

    def _unary_stream(self, name: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        # Written, not yielded: grpc abandons a generator handler cancelled at its
        # `yield`, and the garbage collector closes it later in another task, so the
        # stream's own cleanup (its gauge, its database reads) would wait for that.
        async def unary_stream(request: Any, context: Context) -> None:
            scope = _Scope(name, context)
            try:
                scope.authenticate(self.tenants)
                scope.check_decoded(request)
                async with contextlib.aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        await _write(context, response)
            except BaseException as error:
                await scope.fail(error)
            finally:
                scope.close()

        return unary_stream


async def _write(context: Context, message: Any) -> None:
    """context.write, where a send that fails (the client went away, before grpc says it
    is cancelled) is a cancellation: grpc's own generator path ignores that error too."""
    try:
        await context.write(message)
    except ExecuteBatchError:
        raise asyncio.CancelledError from None


def _metadata_values(context: Context) -> tuple[str | None, str | None]:
    """The request id and the authorization header, the first text value of each, in one
    pass: grpc builds the metadata afresh on every invocation_metadata()."""
    request_id = authorization = None
    for key, value in context.invocation_metadata() or ():
        if not isinstance(value, str):
            continue
        if key == "authorization" and authorization is None:
            authorization = value
        elif key == REQUEST_ID_METADATA and request_id is None:
            request_id = value
    return request_id, authorization


class _Scope:
    """One RPC: its request id and caller, how it ended, and how long it took."""

    def __init__(self, name: str, context: Context) -> None:
        self.name = name
        self.context = context
        self.code = grpc.StatusCode.OK
        self.started = time.perf_counter()
        # Each RPC runs in a task of its own, so what is set here ends with it; nothing
        # is reset (a stream's generator may be closed from another task, where a reset
        # would fail).
        request_id, self.authorization = _metadata_values(context)
        REQUEST_ID.set(clean_request_id(request_id) or fresh_request_id())

    def authenticate(self, tenants: Tenants) -> None:
        _CALLER.set(tenants.authenticate(self.authorization))

    def check_decoded(self, request: Any) -> None:
        if isinstance(request, Undecodable):
            raise malformed_request(self.name)

    async def fail(self, error: BaseException) -> NoReturn:
        """Ends the call with the status the error stands for; never with its trace."""
        if isinstance(error, asyncio.CancelledError):
            self.code = grpc.StatusCode.CANCELLED
        if isinstance(error, grpc.aio.AbortError) or not isinstance(error, Exception):
            raise error
        if isinstance(error, ApiError):
            self.code = error.status
            abort_with_status: Callable[[grpc.Status], Awaitable[NoReturn]]
            abort_with_status = self.context.abort_with_status  # type: ignore[attr-defined]
            await abort_with_status(error.to_status())
        if isinstance(error, StatementError | PoolTimeout):
            await self._database_failed(error)
        self.code = grpc.StatusCode.INTERNAL
        log.error("%s failed", self.name, exc_info=error)
        await self.context.abort(self.code, INTERNAL_ERROR)

    async def _database_failed(self, error: StatementError | PoolTimeout) -> NoReturn:
        # A pool with no connection free in time is a busy database: retry later.
        if isinstance(error, StatementError) and statement_refused(error):
            self.code = grpc.StatusCode.INTERNAL
            log.error("%s: the database refused a statement", self.name, exc_info=error)
            await self.context.abort(self.code, INTERNAL_ERROR)
        self.code = grpc.StatusCode.UNAVAILABLE
        log.warning("database unavailable: %s", type(error).__name__)
        await self.context.abort(self.code, DATABASE_UNAVAILABLE)

    def close(self) -> None:
        seconds = time.perf_counter() - self.started
        metrics.rpc_finished(self.name, self.code.name, seconds)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "rpc",
                extra={
                    "rpc": self.name,
                    "code": self.code.name,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )
