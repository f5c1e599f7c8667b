"""The gRPC backend the gateway calls: one channel, its stubs, and per-call options."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2_grpc

from batchd import tracing
from batchd.logs import REQUEST_ID_METADATA
from batchd.messages import MESSAGE_SIZE_OPTIONS
from batchd.v1 import batch_pb2_grpc
from gateway.errors import ApiProblem
from gateway.observability import REQUEST_ID_KEY
from gateway.settings import SETTINGS_KEY


@dataclass(frozen=True)
class Backend:
    batches: batch_pb2_grpc.BatchServiceStub
    health: health_pb2_grpc.HealthStub
    timeout: float


BACKEND_KEY = web.AppKey("backend", Backend)


def batch_service(request: web.Request) -> batch_pb2_grpc.BatchServiceStub:
    return request.app[BACKEND_KEY].batches


def call_options(request: web.Request) -> dict[str, Any]:
    """Per-call options: the caller's credentials, the request id and a deadline."""
    return {"metadata": call_metadata(request), "timeout": request.app[BACKEND_KEY].timeout}


def call_metadata(request: web.Request) -> tuple[tuple[str, str], ...]:
    """What every call carries: the caller's credentials and the request id."""
    return (*caller_metadata(request), *request_id_metadata(request))


def request_id_metadata(request: web.Request) -> tuple[tuple[str, str], ...]:
    """The service logs it, stores it with a batch and sends it upstream."""
    request_id = request.get(REQUEST_ID_KEY)
    return () if request_id is None else ((REQUEST_ID_METADATA, request_id),)


def caller_metadata(request: web.Request) -> tuple[tuple[str, str], ...]:
    """The Authorization header as gRPC metadata; the service authenticates it."""
    header = request.headers.get("Authorization")
    if header is None:
        return ()
    # gRPC metadata carries printable ASCII only; no valid token is anything else.
    if not (header.isascii() and header.isprintable()):
        raise ApiProblem(
            401,
            "unauthorized",
            "The Authorization header is not a bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return (("authorization", header),)


# A target naming several replicas (`ipv4:10.0.0.1:50051,10.0.0.2:50051`, or a DNS
# name with several addresses) spreads calls over those that answer, instead of
# grpc's default of the first that connects; one address behaves as before.
CHANNEL_OPTIONS = [*MESSAGE_SIZE_OPTIONS, ("grpc.lb_policy_name", "round_robin")]


async def grpc_backend(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the channel lives as long as the application."""
    settings = app[SETTINGS_KEY]
    async with grpc.aio.insecure_channel(
        settings.grpc_target,
        options=CHANNEL_OPTIONS,
        interceptors=tracing.grpc_client_interceptors(),
    ) as channel:
        app[BACKEND_KEY] = Backend(
            batch_pb2_grpc.BatchServiceStub(channel),
            health_pb2_grpc.HealthStub(channel),
            settings.rpc_timeout,
        )
        yield
