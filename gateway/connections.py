"""The gateway's HTTP connections: requests too malformed to reach a handler, answered in
the contract's shape, and the time a client may take to send its request's headers.

aiohttp answers a request its parser refuses with a text/plain 400 that quotes the
offending bytes, and logs them with a traceback: an `Authorization` header with a
control character reached both, token and all. Here such a request gets the contract's
error JSON with a status naming the fault, and the log gets the fault's kind only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from gateway.errors import ApiProblem, bad_request, internal
from gateway.middleware import problem_response
from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)
# aiohttp's defaults, except that a header field may be 8 KiB exactly: the two limits
# differ so that a LineTooLong, which says only its limit, tells which one was passed.
REQUEST_LINE_LIMIT = 8190
HEADER_FIELD_LIMIT = 8192
MAX_HEADERS = 128
_TOO_MANY_HEADERS = "Too many headers received"


def framing_problem(error: BaseException | None) -> ApiProblem:
    """The contract's error for a request the HTTP parser refused; it never quotes the request."""
    if isinstance(error, BadHttpMethod):
        if "HTTPS" in error.message:
            return bad_request("This port speaks plain HTTP, not TLS")
        return ApiProblem(501, "not_implemented", "The request's method is not one this API has")
    if isinstance(error, LineTooLong):
        if error.args[1] == HEADER_FIELD_LIMIT:
            return ApiProblem(
                431,
                "request_header_fields_too_large",
                f"A request header is longer than {HEADER_FIELD_LIMIT} bytes",
            )
        return ApiProblem(
            414, "uri_too_long", f"The request line is longer than {REQUEST_LINE_LIMIT} bytes"
        )
    if isinstance(error, BadHttpMessage) and error.message == _TOO_MANY_HEADERS:
        return ApiProblem(
            431, "request_header_fields_too_large", f"The request has over {MAX_HEADERS} headers"
        )
    if isinstance(error, HttpProcessingError):
        return bad_request(f"The request is not valid HTTP/1.1: {parser_reason(error)}")
    return internal()


def parser_reason(error: HttpProcessingError) -> str:
    """What llhttp found wrong, without the bytes aiohttp's message quotes after it.

    llhttp's messages read `<reason>:\\n\\n  <bytes>\\n  <pointer>`, the reason one of its
    fixed strings; aiohttp's own messages (bad headers) quote the header, so they get a
    fixed text."""
    reason, separator, _ = error.message.partition(":\n\n")
    if not separator:
        return "malformed request head"
    return reason.splitlines()[-1].strip()


def is_the_clients_fault(error: BaseException | None) -> bool:
    return isinstance(error, (HttpProcessingError, web.RequestPayloadError))


class ContractRequestHandler(RequestHandler):
    """aiohttp's connection protocol, answering what its parser refuses as the contract does."""

    def data_received(self, data: bytes) -> None:
        reading = self._current_request
        queued = len(self._messages)
        super().data_received(data)
        if reading is None or len(self._messages) <= queued:
            return
        refused, _ = self._messages[-1]
        if isinstance(refused, _ErrInfo) and not reading.content.is_eof():
            # aiohttp's parser drops the body it was feeding when its chunking breaks
            # midway, and the handler reading it would wait forever: it fails instead.
            error = web.RequestPayloadError("the body's framing is broken")
            reading.content.set_exception(error, refused.exc)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        problem = framing_problem(exc)
        if is_the_clients_fault(exc):
            log.info("refused a malformed HTTP request: %s", type(exc).__name__)
        else:
            log.error("error handling an HTTP request", exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had begun; no error answer can follow it")
        response = problem_response(problem)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp logs a request body it cannot read (a garbage gzip body) once more after
        the answer, quoting it: the client's fault, told once, by its kind only."""
        error = kwargs.get("exc_info")
        if is_the_clients_fault(error):
            log.debug("client error after the answer: %s", type(error).__name__)
        else:
            super().log_exception(*args, **kwargs)


class ContractServer(web.Server):
    """An aiohttp Server whose connections are ContractRequestHandlers."""

    def __init__(
        self, handler: Any, request_factory: Any, *, handler_cancellation: bool, **options: Any
    ) -> None:
        super().__init__(
            handler,
            request_factory=request_factory,
            handler_cancellation=handler_cancellation,
            **options,
        )
        self._options = options

    def __call__(self) -> RequestHandler:
        # Server.__call__ makes the stock handler with these same options.
        return ContractRequestHandler(self, loop=asyncio.get_running_loop(), **self._options)


class GatewayRunner(web.AppRunner):
    """An AppRunner serving through ContractServer, with the gateway's connection limits."""

    def __init__(self, app: web.Application, settings: GatewaySettings) -> None:
        super().__init__(app)
        self._settings = settings

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return ContractServer(
            server.request_handler,
            server.request_factory,
            # observability.observe logs each request once, as JSON: no access log besides.
            access_log=None,
            # A client that disconnects cancels its handler, and so its gRPC calls: an
            # abandoned event stream must not keep a WatchBatch open.
            handler_cancellation=True,
            # A connection waiting for a request's headers (idle between requests, or
            # sending them slowly) is closed after this: aiohttp's default is an hour.
            keepalive_timeout=self._settings.keepalive_timeout,
            max_line_size=REQUEST_LINE_LIMIT,
            max_field_size=HEADER_FIELD_LIMIT,
            max_headers=MAX_HEADERS,
        )
