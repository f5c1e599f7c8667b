"""REST webhook endpoints, as SureCart and Stripe manage theirs: create, list, read,
delete, and an endpoint's deliveries (why it gets nothing, when it does not).

The create body is `{"webhook_endpoint": {"url": "...", "webhook_events": [...]}}`:
a wrong envelope is a 400, wrong types inside it are a 422 naming the field, and
the service checks the values (the URL's form, the event types). A string that
is not valid Unicode (a lone surrogate) is a 400, as in the batch body.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from batchd.json_values import has_surrogate
from batchd.rest_objects import JSONObject, list_object
from batchd.v1 import batch_pb2
from gateway import params
from gateway.backend import batch_service, call_options
from gateway.batch_body import parse_json
from gateway.errors import ValidationError, bad_request, unprocessable
from gateway.json_responses import json_response
from gateway.request_body import read_body

KIND = "webhook_endpoint"
_FIELDS = {"url", "webhook_events"}
DELIVERY_STATUS_NAMES = {
    batch_pb2.WEBHOOK_DELIVERY_STATUS_PENDING: "pending",
    batch_pb2.WEBHOOK_DELIVERY_STATUS_DELIVERED: "delivered",
    batch_pb2.WEBHOOK_DELIVERY_STATUS_FAILED: "failed",
}


def endpoint_object(endpoint: batch_pb2.WebhookEndpoint) -> JSONObject:
    return {
        "id": endpoint.id,
        "object": KIND,
        "url": endpoint.url,
        "webhook_events": list(endpoint.webhook_events),
        "created_at": endpoint.create_time.seconds,
        "updated_at": endpoint.update_time.seconds,
    }


def delivery_object(delivery: batch_pb2.WebhookDelivery) -> JSONObject:
    def seconds(name: str) -> int | None:
        return getattr(delivery, name).seconds if delivery.HasField(name) else None

    return {
        "id": delivery.id,
        "object": "webhook_delivery",
        "webhook_endpoint": delivery.webhook_endpoint_id,
        "event": delivery.event_id,
        "event_type": delivery.event_type,
        "batch": delivery.batch_id,
        "status": DELIVERY_STATUS_NAMES.get(delivery.status),
        "attempts": delivery.attempts,
        "last_response_status": (
            delivery.last_response_status if delivery.HasField("last_response_status") else None
        ),
        "last_error": delivery.last_error or None,
        "last_attempt_at": seconds("last_attempt_time"),
        "next_attempt_at": seconds("next_attempt_time"),
        "created_at": delivery.create_time.seconds,
        "updated_at": delivery.update_time.seconds,
    }


def create_request(raw: bytes) -> batch_pb2.CreateWebhookEndpointRequest:
    document = parse_json(raw)
    if not isinstance(document, dict) or not isinstance(document.get(KIND), dict):
        raise bad_request(
            'The body must be a JSON object {"webhook_endpoint": {"url": "...", '
            '"webhook_events": ["batch.completed"]}}'
        )
    fields: dict[str, Any] = document[KIND]
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise bad_request(
            f"Unknown {KIND} key {unknown[0][:50]!r}; known: {', '.join(sorted(_FIELDS))}"
        )
    url = fields.get("url", "")
    events = fields.get("webhook_events", [])
    errors = []
    if not isinstance(url, str):
        errors.append(ValidationError(f"{KIND}.url", f"{KIND}.url.invalid", "url must be a string"))
    if not isinstance(events, list) or not all(isinstance(event, str) for event in events):
        errors.append(
            ValidationError(
                f"{KIND}.webhook_events",
                f"{KIND}.webhook_events.invalid",
                "webhook_events must be an array of event type strings",
            )
        )
    if errors:
        raise unprocessable(f"{KIND}.invalid", errors)
    # protobuf cannot carry a lone surrogate ("\ud800"); the batch body refuses it so too.
    if any(has_surrogate(text) for text in [url, *events]):
        raise bad_request(f"{KIND} strings must be valid Unicode")
    return batch_pb2.CreateWebhookEndpointRequest(
        webhook_endpoint=batch_pb2.WebhookEndpoint(url=url, webhook_events=events)
    )


async def create_endpoint(request: web.Request) -> web.Response:
    """The new endpoint and, this once, its `signing_secret`."""
    call = create_request(await read_body(request))
    reply = await batch_service(request).CreateWebhookEndpoint(call, **call_options(request))
    endpoint = reply.webhook_endpoint
    return json_response({**endpoint_object(endpoint), "signing_secret": endpoint.signing_secret})


async def list_endpoints(request: web.Request) -> web.Response:
    page = params.page_of(request.query)
    call = batch_pb2.ListWebhookEndpointsRequest(
        page_size=page.limit, page=page.page, order_by=page.order_by
    )
    reply = await batch_service(request).ListWebhookEndpoints(call, **call_options(request))
    data = [endpoint_object(endpoint) for endpoint in reply.webhook_endpoints]
    return json_response(list_object(data, reply.total_size, page.limit, page.page, request.path))


async def get_endpoint(request: web.Request) -> web.Response:
    call = batch_pb2.GetWebhookEndpointRequest(id=request.match_info["id"])
    reply = await batch_service(request).GetWebhookEndpoint(call, **call_options(request))
    return json_response(endpoint_object(reply.webhook_endpoint))


async def delete_endpoint(request: web.Request) -> web.Response:
    """Nothing more is sent to it, not even events already waiting."""
    call = batch_pb2.DeleteWebhookEndpointRequest(id=request.match_info["id"])
    reply = await batch_service(request).DeleteWebhookEndpoint(call, **call_options(request))
    return json_response({"id": reply.id, "object": KIND, "deleted": True})


async def list_deliveries(request: web.Request) -> web.Response:
    """The endpoint's deliveries, newest first: each one's last error and next attempt."""
    page = params.page_of(request.query)
    call = batch_pb2.ListWebhookDeliveriesRequest(
        webhook_endpoint_id=request.match_info["id"],
        page_size=page.limit,
        page=page.page,
        order_by=page.order_by,
    )
    reply = await batch_service(request).ListWebhookDeliveries(call, **call_options(request))
    data = [delivery_object(delivery) for delivery in reply.webhook_deliveries]
    return json_response(list_object(data, reply.total_size, page.limit, page.page, request.path))
