"""Every failure as the contract's error JSON: never a stack trace or an HTML error page."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, DecompressSizeError

from gateway.errors import ApiProblem, bad_request, from_rpc_error, internal
from gateway.json_responses import json_response
from gateway.settings import SETTINGS_KEY

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def contract_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiProblem as problem:
        return problem_response(problem)
    except grpc.aio.AioRpcError as error:
        return problem_response(from_rpc_error(error))
    except web.RequestPayloadError as error:
        response = problem_response(_from_payload_error(request, error))
        # Where the next request would start is lost with the body's framing.
        response.force_close()
        return response
    except web.HTTPException as exception:
        if exception.status < 400:
            raise
        return problem_response(_from_http_exception(request, exception))
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return problem_response(internal())


def problem_response(problem: ApiProblem) -> web.Response:
    response = json_response(problem.as_json(), status=problem.status, headers=problem.headers)
    if problem.close_connection:
        response.force_close()
    return response


def _from_payload_error(request: web.Request, error: web.RequestPayloadError) -> ApiProblem:
    """A body the parser could not read: its framing or its Content-Encoding is broken."""
    if isinstance(error.__cause__, DecompressSizeError):
        limit = request.app[SETTINGS_KEY].max_body_bytes
        return ApiProblem(
            413, "payload_too_large", f"The request body decompresses to over {limit} bytes"
        )
    if isinstance(error.__cause__, ContentEncodingError):
        return bad_request("The request body does not decode as its Content-Encoding says")
    return bad_request("The request body's framing (Content-Length or chunked) is broken")


def _from_http_exception(request: web.Request, exception: web.HTTPException) -> ApiProblem:
    route = f"{request.method} {request.path[:200]}"
    if isinstance(exception, web.HTTPNotFound):
        return ApiProblem(404, "not_found", f"No such route: {route}")
    if isinstance(exception, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exception.allowed_methods))
        return ApiProblem(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.path[:200]}; allowed: {allowed}",
            headers={"Allow": allowed},
        )
    if isinstance(exception, web.HTTPRequestEntityTooLarge):
        limit = request.app[SETTINGS_KEY].max_body_bytes
        return ApiProblem(
            413, "payload_too_large", f"The request body is larger than {limit} bytes"
        )
    return ApiProblem(exception.status, f"http.{exception.status}", exception.reason)
