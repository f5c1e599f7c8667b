"""What operators see of each HTTP request: its request id, one JSON log event, metrics.

The request id is the caller's X-Request-Id when usable, else a fresh one; it goes
to the service as gRPC metadata and back to the caller on every response.
"""

from __future__ import annotations

import functools
import logging
import time

import prometheus_client
from aiohttp import web
from prometheus_client import Counter, Histogram

from batchd.logs import REQUEST_ID, REQUEST_ID_HEADER, clean_request_id, fresh_request_id
from gateway.middleware import Handler

log = logging.getLogger("batchd.http")

REQUEST_ID_KEY = web.RequestKey("request_id", str)
# Labelled by the route's pattern, never the raw path, so the series stay few.
HTTP_REQUESTS = Counter(
    "batchd_http_requests", "HTTP requests answered by the gateway", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "batchd_http_request_duration_seconds",
    "Time the gateway took to answer an HTTP request",
    ["method", "route", "status"],
)
UNMATCHED_ROUTE = "unmatched"
# Any token is a method to aiohttp; the label takes only these, so it stays bounded.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# nginx's code for a request whose client went away before the answer.
CLIENT_CLOSED_REQUEST = 499


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: the contract's error middleware has answered every failure
    but a cancelled request and a redirect by the time the handler returns here."""
    started = time.perf_counter()
    request_id = clean_request_id(request.headers.get(REQUEST_ID_HEADER)) or fresh_request_id()
    request[REQUEST_ID_KEY] = request_id
    token = REQUEST_ID.set(request_id)
    # Stays so only when the request is cancelled: its client went away.
    status = CLIENT_CLOSED_REQUEST
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exception:
        status = exception.status
        raise
    finally:
        _record(request, status, time.perf_counter() - started)
        REQUEST_ID.reset(token)


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return UNMATCHED_ROUTE if resource is None else resource.canonical


@functools.cache
def _series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    """The metric children of one label set, kept: labels() locks and validates on each call.
    Methods, route patterns and statuses are all bounded, so the cache is too."""
    return HTTP_REQUESTS.labels(method, route, status), HTTP_SECONDS.labels(method, route, status)


def _record(request: web.Request, status: int, seconds: float) -> None:
    route = route_of(request)
    method = request.method if request.method in KNOWN_METHODS else "other"
    requests, latency = _series(method, route, status)
    requests.inc()
    latency.observe(seconds)
    if not log.isEnabledFor(logging.INFO):
        return
    log.info(
        "http request",
        extra={
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        },
    )


async def send_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer carries the id, errors and streams included."""
    request_id = request.get(REQUEST_ID_KEY)
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id


async def metrics(request: web.Request) -> web.Response:
    """The default registry: in the all-in-one batchd it holds the service's metrics too."""
    return web.Response(
        body=prometheus_client.generate_latest(),
        headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST},
    )
