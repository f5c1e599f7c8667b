"""OpenTelemetry tracing of the three hops: gateway, service, upstream. Off unless asked.

The standard variables turn it on: OTEL_TRACES_EXPORTER=otlp (or console), or an
OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
Spans go out over OTLP/HTTP (http/protobuf); the SDK itself reads the rest
(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER[_ARG],
OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_*, OTEL_PROPAGATORS). Off, nothing is
installed: no exporter thread, no middleware, no interceptor, no trace config, and
the engine's per-operation hook is a null context.

The spans come from the official instrumentations, each where it fits:
- the gateway's HTTP server span: opentelemetry-instrumentation-aiohttp-server, whose
  instrumentor wraps every aiohttp application made afterwards (so configure() runs
  before any is made), continuing a caller's W3C `traceparent` when it parses;
- the gateway's gRPC client span and the service's server span:
  opentelemetry-instrumentation-grpc's aio interceptors, BatchService only (health
  checks would be noise). The server interceptor runs inside the service's own
  (service/rpc_scope.py), around the servicer: that one writes stream messages
  rather than yielding them, which the OTel wrapper cannot wrap;
- the engine's upstream call: opentelemetry-instrumentation-aiohttp-client's trace
  config on the engine's session, which injects `traceparent` into each attempt's
  headers (the executor's own headers and its send-once guard stay as they are).

A batch runs long after the request that created it: CreateBatch stores the
context it ran in as a `traceparent` (batches.traceparent), and each operation's
execution span is a child of it, in the same trace. A child rather than a link:
the trace id the caller saw then runs through to the upstream's `traceparent`
header (an upstream's own spans join the caller's trace), and the batch is
sampled whole, as its create request was (ParentBased), never operation by
operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

import aiohttp
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from yarl import URL

from batchd.config import ConfigError
from batchd.vocabulary import SERVICE_NAME as BATCH_SERVICE

# A version-00 traceparent: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>.
TRACEPARENT_LENGTH = 55
EXPORTERS = ("otlp", "console", "none")
OTLP_PROTOCOL = "http/protobuf"
# The specification's samplers; the SDK would fall back to the default on any other.
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_TRACE_CONTEXT = TraceContextTextMapPropagator()
_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


def configure(default_service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Installs tracing when the OTEL_* variables ask for it; True if on. The first
    call decides: the all-in-one's service and gateway share one provider."""
    global _provider, _tracer
    if _provider is not None:
        return True
    exporter = _exporter(environ)
    if exporter is None:
        return False
    _check_sampler(environ)
    service_name = environ.get("OTEL_SERVICE_NAME") or default_service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider, _tracer = provider, provider.get_tracer("batchd")
    _instrument_http_servers(provider)
    _log_trace_ids()
    return True


def enabled() -> bool:
    return _provider is not None


async def shutdown() -> None:
    """Exports what is left (bounded by the exporter's timeout), off the event loop."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        await asyncio.to_thread(provider.shutdown)


def _exporter(environ: Mapping[str, str]) -> SpanExporter | None:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = {n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")} - {""}
    if not names:
        endpoints = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
        names = {"otlp"} if any(environ.get(name) for name in endpoints) else {"none"}
    unknown = names - set(EXPORTERS)
    if unknown or len(names) > 1:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={environ.get('OTEL_TRACES_EXPORTER')!r}: "
            f"batchd exports to one of {', '.join(EXPORTERS)}"
        )
    [name] = names
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(variable)
        if protocol and protocol.strip() != OTLP_PROTOCOL:
            raise ConfigError(
                f"{variable}={protocol!r}: batchd exports OTLP over HTTP only ({OTLP_PROTOCOL})"
            )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _check_sampler(environ: Mapping[str, str]) -> None:
    """A sampler the SDK would not read stops the start, rather than tracing everything."""
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler and sampler not in SAMPLERS:
        raise ConfigError(f"OTEL_TRACES_SAMPLER={sampler!r}: one of {', '.join(SAMPLERS)}")
    argument = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if sampler.endswith("traceidratio") and argument:
        try:
            ratio = float(argument)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(
                f"OTEL_TRACES_SAMPLER_ARG={argument[:40]!r}: a ratio from 0 to 1 for {sampler}"
            )


def _instrument_http_servers(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    AioHttpServerInstrumentor().instrument(tracer_provider=provider)


class _TraceIdFilter(logging.Filter):
    """Puts the current trace and span ids on each log record, beside its request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        return True


def _log_trace_ids() -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(_TraceIdFilter())


def grpc_server_interceptors() -> list[Any]:
    """The OTel server interceptor for BatchService, to run inside service/rpc_scope's."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    return [aio_server_interceptor(_provider, filter_=filters.service_name(BATCH_SERVICE))]


def grpc_client_interceptors() -> list[Any]:
    """The OTel client interceptors for a channel to BatchService: they send `traceparent`."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors, filters

    interceptors: list[Any] = aio_client_interceptors(
        _provider, filter_=filters.service_name(BATCH_SERVICE)
    )
    return interceptors


def http_client_trace_configs() -> list[aiohttp.TraceConfig]:
    """For the engine's upstream session: a client span per attempt, and its `traceparent`."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    return [create_trace_config(url_filter=_without_query, tracer_provider=_provider)]


def _without_query(url: URL) -> str:
    """An operation's query may hold a tenant's data: spans show the path only."""
    return str(url.with_query(None).with_fragment(None))


def current_traceparent() -> str | None:
    """The context a call runs in, as a traceparent to store; None when tracing is off."""
    if _provider is None:
        return None
    carrier: dict[str, str] = {}
    _TRACE_CONTEXT.inject(carrier)
    return carrier.get("traceparent")


def operation_span(
    traceparent: str | None, operation_id: str, batch_id: str
) -> AbstractContextManager[object]:
    """The span of one operation's execution, a child of its batch's create call."""
    if _tracer is None:
        return _NO_SPAN
    return _operation_span(_tracer, traceparent, operation_id, batch_id)


@functools.lru_cache(maxsize=1024)
def _stored_context(traceparent: str) -> Context:
    """Parsed once per batch, not once per operation: a batch's operations share it."""
    return _TRACE_CONTEXT.extract({"traceparent": traceparent})


@contextlib.contextmanager
def _operation_span(
    tracer: trace.Tracer, traceparent: str | None, operation_id: str, batch_id: str
) -> Iterator[trace.Span]:
    parent = _stored_context(traceparent) if traceparent else None
    attributes = {"batchd.batch.id": batch_id, "batchd.operation.id": operation_id}
    with tracer.start_as_current_span(
        "execute operation", context=parent, attributes=attributes
    ) as span:
        yield span
