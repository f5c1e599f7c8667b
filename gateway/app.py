"""The gateway's aiohttp application: routes, middlewares and the BatchService channel."""

from __future__ import annotations

import asyncio

import grpc
from aiohttp import web

from batchd.sites import start_runner
from gateway import handlers, observability, webhook_endpoints
from gateway.backend import BACKEND_KEY, backend_of, grpc_backend
from gateway.batch_events import STOPPING_KEY, batch_events, end_event_streams
from gateway.batch_results import batch_results
from gateway.connections import GatewayRunner
from gateway.console import add_console
from gateway.middleware import contract_errors
from gateway.openapi import load_document, openapi_document
from gateway.settings import SETTINGS_KEY, GatewaySettings


def create_app(
    settings: GatewaySettings, channel: grpc.aio.Channel | None = None
) -> web.Application:
    """Calls BatchService over `channel` if given (its owner closes it), else over a gRPC
    channel of its own to `settings.grpc_target`."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[observability.observe, contract_errors],
    )
    app[SETTINGS_KEY] = settings
    app[STOPPING_KEY] = asyncio.Event()
    app.on_shutdown.append(end_event_streams)
    load_document(app)
    app.on_response_prepare.append(observability.send_request_id)
    if channel is None:
        app.cleanup_ctx.append(grpc_backend)
    else:
        app[BACKEND_KEY] = backend_of(channel, settings.rpc_timeout)
    app.router.add_routes(
        [
            web.post("/v1/batches", handlers.create_batch),
            web.get("/v1/batches", handlers.list_batches),
            web.get("/v1/batches/{id}", handlers.get_batch),
            web.post("/v1/batches/{id}/cancel", handlers.cancel_batch),
            web.delete("/v1/batches/{id}", handlers.delete_batch),
            web.post("/v1/batches/{id}/retry", handlers.retry_batch),
            web.get("/v1/batches/{id}/events", batch_events),
            web.get("/v1/batches/{id}/results", batch_results),
            web.get("/v1/batch_operations", handlers.list_operations),
            web.get("/v1/batch_operations/{id}", handlers.get_operation),
            web.post("/v1/webhook_endpoints", webhook_endpoints.create_endpoint),
            web.get("/v1/webhook_endpoints", webhook_endpoints.list_endpoints),
            web.get("/v1/webhook_endpoints/{id}", webhook_endpoints.get_endpoint),
            web.delete("/v1/webhook_endpoints/{id}", webhook_endpoints.delete_endpoint),
            web.get("/v1/webhook_endpoints/{id}/deliveries", webhook_endpoints.list_deliveries),
            web.get("/healthz", handlers.healthz),
            web.get("/metrics", observability.metrics),
            web.get("/openapi.json", openapi_document),
        ]
    )
    add_console(app)
    return app


async def start_gateway(
    settings: GatewaySettings, channel: grpc.aio.Channel | None = None
) -> web.AppRunner:
    """Serves the gateway until the returned runner is cleaned up."""
    runner = GatewayRunner(create_app(settings, channel), settings)
    return await start_runner(runner, settings.host, settings.port, "BATCH_HTTP_ADDRESS")
