"""What every BatchService RPC goes through, unary or streaming: the RPC scope.

The scope wraps each of the service's handlers. It publishes what the handler needs
in context variables: the request id (`batchd.logs.REQUEST_ID`, which every log line
carries) and the authenticated caller (`current_caller()`). Around the handler it
maps errors (an ApiError becomes its rich status, a database error UNAVAILABLE or
INTERNAL, anything else INTERNAL; no trace ever reaches the client), counts the call
in the metrics and logs one event for it. The handlers are wrapped where they are
registered, or, with tracing on, by a server interceptor (RpcScope says why).

grpc decodes a request before any handler or interceptor runs, and answers a
decoding failure UNKNOWN with the exception's class name. So the scope installs a
request deserializer of its own that turns bytes that are no valid message (or nest
deeper than protobuf parses) into an `Undecodable`, which the wrapped handler
answers INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
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
GenericHandler: TypeAlias = "grpc.GenericRpcHandler[Any, Any]"
# A generated `add_<Service>Servicer_to_server`.
AddToServer: TypeAlias = Callable[[Any, Any], None]
if TYPE_CHECKING:  # the stubs make these generic; grpc's classes are not, at run time
    ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
    GenericHandlerBase = grpc.GenericRpcHandler[Any, Any]
else:
    ServerInterceptor = grpc.aio.ServerInterceptor
    GenericHandlerBase = grpc.GenericRpcHandler
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


class RpcScope:
    """Wraps BatchService's handlers in the scope, each once: the one place where both
    ways of applying it get their wrapped handlers.

    Without tracing, `registering()` wraps the handlers as they are registered, so
    that no interceptor is on the call path (grpc's interceptor machinery costs a call
    more than the scope does). With tracing, RpcScopeInterceptor applies it, outside
    tracing's own interceptor, so that the span runs inside the scope."""

    def __init__(self, tenants: Tenants) -> None:
        self.tenants = tenants
        self._wrapped: dict[str, Handler] = {}

    def wrapped(self, method: str, handler: Handler) -> Handler:
        """`handler` of `method` (its full name) inside the scope: wrapped the first
        time, the same afterwards."""
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrap(method.removeprefix(METHOD_PREFIX), handler)
            self._wrapped[method] = wrapped
        return wrapped

    def registering(self, add_to_server: AddToServer) -> AddToServer:
        """A generated `add_*_to_server` whose handlers are registered inside the scope."""

        def add_scoped(servicer: Any, server: Any) -> None:
            add_to_server(servicer, _ScopedServer(server, self))

        return add_scoped

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


class RpcScopeInterceptor(ServerInterceptor):
    """The scope as the outermost server interceptor, for when tracing's runs inside
    it; health and reflection pass untouched. Tracing's interceptor wraps each call
    anew, so every call is looked up before the scope answers it."""

    def __init__(self, scope: RpcScope) -> None:
        self.scope = scope

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or not method.startswith(METHOD_PREFIX):
            return handler
        return self.scope.wrapped(method, handler)


class _ScopedServer:
    """What a generated `add_*_to_server` registers on: the server (or in-process
    channel) underneath, given every handler inside the scope."""

    def __init__(self, server: Any, scope: RpcScope) -> None:
        self._server = server
        self._scope = scope

    def add_generic_rpc_handlers(self, handlers: Iterable[GenericHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            [_ScopedGenericHandler(handler, self._scope) for handler in handlers]
        )

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        """The handlers a grpc.aio server looks up first, by name."""
        scoped = {
            name: self._scope.wrapped(f"/{service}/{name}", handler)
            for name, handler in handlers.items()
        }
        self._server.add_registered_method_handlers(service, scoped)


class _ScopedGenericHandler(GenericHandlerBase):
    """A generic handler's methods inside the scope."""

    def __init__(self, handler: GenericHandler, scope: RpcScope) -> None:
        self._handler = handler
        self._scope = scope

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._handler.service(handler_call_details)
        if handler is None:
            return None
        return self._scope.wrapped(handler_call_details.method, handler)


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
