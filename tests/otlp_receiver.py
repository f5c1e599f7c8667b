"""A real OTLP/HTTP trace receiver on loopback: what batchd's exporter sends, decoded.

It accepts `POST /v1/traces` (ExportTraceServiceRequest as protobuf, the
http/protobuf protocol) as a collector does, and keeps every span with the
service that sent it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

KINDS = {
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    # Lowercase hex, as in a traceparent; parent_span_id is "" for a root span.
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    # (trace id, span id) of each link.
    links: list[tuple[str, str]]


@dataclass
class Received:
    spans: list[ReceivedSpan] = field(default_factory=list)
    # Every POST, decodable or not, so a test can say nothing at all arrived.
    posts: int = 0

    def named(self, name: str, service: str | None = None) -> list[ReceivedSpan]:
        return [
            span
            for span in self.spans
            if span.name == name and (service is None or span.service == service)
        ]

    def by_id(self) -> dict[str, ReceivedSpan]:
        return {span.span_id: span for span in self.spans}


RECEIVED_KEY = web.AppKey("received", Received)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        attributes[pair.key] = _value(pair.value)
    return attributes


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        service = _attributes(resource_spans.resource.attributes).get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service,
                        span.name,
                        KINDS.get(span.kind, "unspecified"),
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                        _attributes(span.attributes),
                        [(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                    )
                )
    return spans


async def export_traces(request: web.Request) -> web.Response:
    received = request.app[RECEIVED_KEY]
    received.posts += 1
    if request.content_type != "application/x-protobuf":
        raise web.HTTPUnsupportedMediaType()
    received.spans.extend(decode(await request.read()))
    return web.Response(
        body=ExportTraceServiceResponse().SerializeToString(),
        content_type="application/x-protobuf",
    )


@asynccontextmanager
async def running_receiver() -> AsyncIterator[tuple[str, Received]]:
    """The receiver's base URL (an OTEL_EXPORTER_OTLP_ENDPOINT) and what it received."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[RECEIVED_KEY] = Received()
    app.router.add_post("/v1/traces", export_traces)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", app[RECEIVED_KEY]
    finally:
        await runner.cleanup()
