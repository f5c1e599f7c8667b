"""A grpc.aio channel whose calls the service handles in its own process, with no socket.

What grpc-gateway's `Register...HandlerServer` does for a Go server: the caller keeps
the generated stubs (`BatchServiceStub(channel)`) and its request and response
messages; the call skips HTTP/2 and serialisation. Everything else is the server's:
the handlers come from the same `add_*_to_server` registrations (BatchService's
wrapped in the RPC scope: authentication, request ids, metrics, logs, error mapping),
and each call goes through the server's interceptors (with tracing on, the scope's
and tracing's) in a task of its own, as grpc.aio runs it. A deadline
cancels the handler and fails the call DEADLINE_EXCEEDED; a cancelled call cancels
the handler. A failed call raises grpc.aio.AioRpcError with the status's trailing
metadata, so rich error details (grpc-status-details-bin) read as over the wire.

Built from the registrations, not from a list of methods: an RPC added to the proto
(unary or server-streaming) works here once the servicer implements it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn, TypeAlias

import grpc

log = logging.getLogger(__name__)
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Metadata: TypeAlias = "grpc.aio.Metadata | Sequence[tuple[str, str | bytes]]"
# A generated `add_<Service>Servicer_to_server` and the servicer it registers.
Registration: TypeAlias = tuple[Callable[[Any, Any], None], Any]
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"
# grpc.aio's own text for these ends, so that callers' logs read alike both ways.
DEADLINE_EXCEEDED = "Deadline Exceeded"
METHOD_NOT_FOUND = "Method not found!"
# The end of a stream, as grpc.aio's read() says it (the type stubs omit it).
EOF = grpc.aio.EOF  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _CallDetails(grpc.HandlerCallDetails):
    method: str
    invocation_metadata: tuple[tuple[str, str | bytes], ...]

    @classmethod
    def of(cls, method: str, metadata: Metadata | None) -> _CallDetails:
        return cls(method, tuple(_Metadatum(key, value) for key, value in metadata or ()))


class _Metadatum(NamedTuple):
    """A metadata pair as a grpc server hands it over: a tuple with `key` and `value`
    (tracing's interceptor reads those names)."""

    key: str
    value: str | bytes


class _Handlers:
    """Collects what generated `add_*_to_server` functions register, as a server does."""

    def __init__(self, registrations: Iterable[Registration]) -> None:
        self._generic: list[grpc.GenericRpcHandler[Any, Any]] = []
        for add_to_server, servicer in registrations:
            add_to_server(servicer, self)

    def add_generic_rpc_handlers(
        self, handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        """The same handlers as the generic one registered beside them: a server's fast
        path by name, which the generic handlers' own lookup by name makes redundant here."""

    async def find(self, details: grpc.HandlerCallDetails) -> Handler | None:
        for generic in self._generic:
            handler = generic.service(details)
            if handler is not None:
                return handler
        return None


class InProcessChannel(grpc.aio.Channel):
    """A channel to the servicers of `registrations`, through the server's `interceptors`
    in order, after the `client_interceptors` a grpc.aio channel would run (tracing's,
    which send the caller's span as metadata)."""

    def __init__(
        self,
        registrations: Iterable[Registration],
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
        client_interceptors: Sequence[Any] = (),
    ) -> None:
        handlers = _Handlers(registrations)
        resolve: Continuation = handlers.find
        for interceptor in reversed(interceptors):
            resolve = functools.partial(interceptor.intercept_service, resolve)
        self._resolve = resolve
        self._unary_interceptors = [
            interceptor.intercept_unary_unary
            for interceptor in client_interceptors
            if isinstance(interceptor, grpc.aio.UnaryUnaryClientInterceptor)
        ]
        self._stream_interceptors = [
            interceptor.intercept_unary_stream
            for interceptor in client_interceptors
            if isinstance(interceptor, grpc.aio.UnaryStreamClientInterceptor)
        ]

    async def handler(self, details: grpc.HandlerCallDetails) -> Handler:
        handler = await self._resolve(details)
        if handler is None:
            raise _error(grpc.StatusCode.UNIMPLEMENTED, METHOD_NOT_FOUND)
        return handler

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        # Serialisers are what an in-process call leaves out.
        if self._unary_interceptors:
            return _Intercepted(self, method, _UnaryCall, self._unary_interceptors)
        return _MultiCallable(self, method, _UnaryCall)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._stream_interceptors:
            return _Intercepted(self, method, _StreamCall, self._stream_interceptors)
        return _MultiCallable(self, method, _StreamCall)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("in-process calls are unary or server-streaming")

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("in-process calls are unary or server-streaming")

    async def __aenter__(self) -> InProcessChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self, grace: float | None = None) -> None:
        """Nothing to close: calls end with their callers' tasks."""

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return grpc.ChannelConnectivity.READY

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        """The state never changes from READY: this waits forever, as it would on grpc."""
        await asyncio.Event().wait()

    async def channel_ready(self) -> None:
        """Always ready."""


def _metadata(pairs: Metadata) -> grpc.aio.Metadata:
    return grpc.aio.Metadata(*pairs)


def _error(code: grpc.StatusCode, details: str, trailing: Metadata = ()) -> grpc.aio.AioRpcError:
    """A failed call as a grpc.aio client raises it."""
    return grpc.aio.AioRpcError(code, _metadata(()), _metadata(trailing), details, None)


@dataclass(frozen=True)
class _MultiCallable:
    channel: InProcessChannel
    method: str
    call_class: type[_Call]

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        **options: Any,
    ) -> _Call:
        return self.call_class(
            self.channel, _CallDetails.of(self.method, metadata), request, timeout
        )


@dataclass(frozen=True)
class _Intercepted:
    """A method whose calls pass the client interceptors first, as on a grpc.aio channel:
    each gets a continuation that starts the call, and returns that call, a response
    (unary) or an iterator of responses (a stream) in its place."""

    channel: InProcessChannel
    method: str
    call_class: type[_Call]
    interceptors: Sequence[Callable[..., Awaitable[Any]]]

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        **options: Any,
    ) -> _InterceptedUnary | _InterceptedStream:
        started: list[_Call] = []

        async def start(details: grpc.aio.ClientCallDetails, request: Any) -> _Call:
            call = self.call_class(
                self.channel,
                _CallDetails.of(details.method, details.metadata),
                request,
                details.timeout,
            )
            started.append(call)
            return call

        continuation: Callable[..., Awaitable[Any]] = start
        for intercept in reversed(self.interceptors):
            continuation = functools.partial(intercept, continuation)
        details = grpc.aio.ClientCallDetails(
            self.method, timeout, _metadata(metadata or ()), None, None
        )
        outcome = asyncio.ensure_future(continuation(details, request))
        if self.call_class is _StreamCall:
            return _InterceptedStream(outcome, started)
        return _InterceptedUnary(outcome, started)


class _InterceptedUnary:
    def __init__(self, outcome: asyncio.Future[Any], started: list[_Call]) -> None:
        self._outcome = outcome
        self._started = started

    async def _response(self) -> Any:
        result = await self._outcome
        return await result if isinstance(result, _UnaryCall) else result

    def __await__(self) -> Generator[Any, None, Any]:
        return self._response().__await__()

    def cancel(self) -> bool:
        for call in self._started:
            call.cancel()
        return self._outcome.cancel()


class _InterceptedStream:
    def __init__(self, outcome: asyncio.Future[Any], started: list[_Call]) -> None:
        self._outcome = outcome
        self._started = started
        self._responses: AsyncIterator[Any] | None = None
        self._closing: asyncio.Future[None] | None = None

    async def _iterator(self) -> AsyncIterator[Any]:
        if self._responses is None:
            self._responses = aiter(await self._outcome)
        return self._responses

    async def read(self) -> Any:
        return await anext(await self._iterator(), EOF)

    async def __aiter__(self) -> AsyncIterator[Any]:
        responses = await self._iterator()
        async for response in responses:
            yield response

    def cancel(self) -> bool:
        """Cancels the call, and closes what an interceptor iterates over it (so that, say,
        a tracing span around the stream ends)."""
        for call in self._started:
            call.cancel()
        if self._responses is not None and self._closing is None:
            self._closing = asyncio.ensure_future(_close(self._responses))
        return self._outcome.cancel()


async def _close(responses: AsyncIterator[Any]) -> None:
    close = getattr(responses, "aclose", None)
    if close is None:
        return
    # Running means a reader's task is being cancelled inside it: that ends it too.
    with contextlib.suppress(RuntimeError):
        await close()


class _Context(grpc.aio.ServicerContext[Any, Any]):
    """The handler's side of one call: the caller's metadata, the deadline, the status
    it sets, and (for a stream) the messages it writes."""

    def __init__(
        self, details: _CallDetails, deadline: float | None, messages: asyncio.Queue[Any] | None
    ) -> None:
        self._details = details
        self._deadline = deadline
        self.status_code = grpc.StatusCode.OK
        self.status_details = ""
        self.trailing: Metadata = ()
        self.messages = messages

    def error(self) -> grpc.aio.AioRpcError:
        return _error(self.status_code, self.status_details, self.trailing)

    # A tuple of pairs, as grpc.aio answers (its type stubs say Metadata).
    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:  # type: ignore[override]
        return self._details.invocation_metadata

    # None without a deadline, as grpc.aio answers (its type stubs say float).
    def time_remaining(self) -> float | None:  # type: ignore[override]
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> NoReturn:
        self.status_code, self.status_details = code, details
        if trailing_metadata:
            self.trailing = tuple(trailing_metadata)
        raise grpc.aio.AbortError()

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        await self.abort(status.code, status.details, status.trailing_metadata)

    async def write(self, message: Any) -> None:
        if self.messages is None:
            raise TypeError("a unary method writes no messages")
        await self.messages.put(message)

    async def read(self) -> NoReturn:
        raise NotImplementedError("in-process calls carry one request")

    def set_code(self, code: grpc.StatusCode) -> None:
        self.status_code = code

    def set_details(self, details: str) -> None:
        self.status_details = details

    def set_trailing_metadata(self, trailing_metadata: Metadata) -> None:
        self.trailing = tuple(trailing_metadata)

    async def send_initial_metadata(self, initial_metadata: Metadata) -> None:
        """Initial metadata has no reader in-process."""

    def peer(self) -> str:
        # Local, like a Unix socket's peer, and in the form telemetry knows not to
        # parse as an address.
        return "unix:in-process"

    def peer_identities(self) -> None:
        return None

    def peer_identity_key(self) -> None:
        return None

    def auth_context(self) -> dict[str, Iterable[bytes]]:
        return {}

    def set_compression(self, compression: grpc.Compression) -> None:
        """Nothing is compressed in-process."""

    def disable_next_message_compression(self) -> None:
        """Nothing is compressed in-process."""


class _Call:
    """One call, run as a task of its own like a grpc.aio server runs a handler."""

    # Whether the handler writes messages: a queue costs a unary call for nothing.
    streams = False

    def __init__(
        self, channel: InProcessChannel, details: _CallDetails, request: Any, timeout: float | None
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        # One message in hand at a time: a slow reader slows the writer, as flow control does.
        messages: asyncio.Queue[Any] | None = asyncio.Queue(maxsize=1) if self.streams else None
        self._context = _Context(details, deadline, messages)
        self._task = loop.create_task(self._run(channel, details, request, timeout))

    async def _run(
        self, channel: InProcessChannel, details: _CallDetails, request: Any, timeout: float | None
    ) -> Any:
        context = self._context
        try:
            handler = await channel.handler(details)
            async with asyncio.timeout(timeout):
                response = await self._handle(handler, request, context)
        except grpc.aio.AbortError:
            raise context.error() from None
        except TimeoutError:
            context.status_code = grpc.StatusCode.DEADLINE_EXCEEDED
            context.status_details = DEADLINE_EXCEEDED
            raise context.error() from None
        except grpc.aio.AioRpcError:
            raise
        except Exception as error:
            # What a grpc.aio server answers a handler's unexpected exception.
            log.exception("in-process call %s failed", details.method)
            context.status_code = grpc.StatusCode.UNKNOWN
            context.status_details = f"Unexpected {type(error)}: {error}"
            raise context.error() from None
        if context.status_code != grpc.StatusCode.OK:
            raise context.error()
        return response

    async def _handle(self, handler: Handler, request: Any, context: _Context) -> Any:
        raise NotImplementedError

    def cancel(self) -> bool:
        return self._task.cancel()

    def cancelled(self) -> bool:
        return self._task.cancelled()

    def done(self) -> bool:
        return self._task.done()

    def time_remaining(self) -> float | None:
        return self._context.time_remaining()

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._task.add_done_callback(lambda _: callback(self))

    async def code(self) -> grpc.StatusCode:
        await asyncio.wait([self._task])
        return grpc.StatusCode.CANCELLED if self._task.cancelled() else self._context.status_code

    async def details(self) -> str:
        await asyncio.wait([self._task])
        return self._context.status_details

    async def initial_metadata(self) -> grpc.aio.Metadata:
        return _metadata(())

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        await asyncio.wait([self._task])
        return _metadata(self._context.trailing)

    async def wait_for_connection(self) -> None:
        """Connected from the start."""


class _UnaryCall(_Call):
    async def _handle(self, handler: Handler, request: Any, context: _Context) -> Any:
        behavior: Any = handler.unary_unary
        if behavior is None:
            raise TypeError("a unary call to a streaming method")
        return await behavior(request, context)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._task.__await__()


class _StreamCall(_Call):
    streams = True

    async def _handle(self, handler: Handler, request: Any, context: _Context) -> None:
        behavior: Any = handler.unary_stream
        if behavior is None:
            raise TypeError("a streaming call to a unary method")
        responses = behavior(request, context)
        if inspect.isasyncgen(responses):
            # A handler that yields, where the interceptor has not made it write.
            async for response in responses:
                await context.write(response)
        else:
            await responses

    async def read(self) -> Any:
        """The next message, or EOF at the end; a failed call raises its error."""
        messages = self._context.messages
        assert messages is not None
        if messages.empty() and not self._task.done():
            waiting = asyncio.ensure_future(messages.get())
            try:
                await asyncio.wait([waiting, self._task], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
            if waiting.done() and not waiting.cancelled():
                return waiting.result()
        if not messages.empty():
            return messages.get_nowait()
        if self._task.cancelled():
            raise _error(grpc.StatusCode.CANCELLED, "Locally cancelled")
        self._task.result()
        return EOF

    async def __aiter__(self) -> AsyncIterator[Any]:
        while (message := await self.read()) is not EOF:
            yield message
