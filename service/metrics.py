"""Prometheus metrics of the service process (the default registry).

`batchd` serves them on the gateway's /metrics; `python -m service` on
BATCH_METRICS_ADDRESS when set.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPCS = Counter("batchd_rpc_requests", "gRPC calls handled", ["method", "code"])
RPC_SECONDS = Histogram("batchd_rpc_duration_seconds", "gRPC call latency", ["method"])
OPERATIONS = Counter("batchd_operations_executed", "Operations finished, by outcome", ["status"])
UPSTREAM_SECONDS = Histogram(
    "batchd_upstream_duration_seconds",
    "Time from first send to outcome of an operation, retries included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
IN_FLIGHT = Gauge("batchd_operations_in_flight", "Operations executing in this process")
PENDING = Gauge("batchd_operations_pending", "Pending operations in the whole database")
LEASE_RECOVERIES = Counter(
    "batchd_lease_recoveries", "Operations taken back after their claim's lease expired"
)
WATCH_STREAMS = Gauge("batchd_watch_streams", "Open WatchBatch streams")
EXPORT_STREAMS = Gauge("batchd_export_streams", "Open ExportBatchOperations streams")
EXPORTED_OPERATIONS = Counter(
    "batchd_exported_operations", "Operations sent by ExportBatchOperations streams"
)
UPSTREAM_THROTTLED = Counter(
    "batchd_upstream_throttled",
    "Upstream answers that asked for less (429, 503), by tenant",
    ["tenant", "status"],
)
UPSTREAM_CONCURRENCY = Gauge(
    "batchd_upstream_concurrency",
    "Attempts a tenant may have in flight toward the upstream in this process (AIMD)",
    ["tenant"],
)
UPSTREAM_PAUSE = Gauge(
    "batchd_upstream_pause_seconds",
    "Seconds left of the pause the upstream asked for a tenant's sends",
    ["tenant"],
)
BATCHES_PURGED = Counter(
    "batchd_batches_purged", "Finished batches deleted by the retention window (BATCH_RETENTION)"
)
OPERATIONS_PURGED = Counter(
    "batchd_operations_purged", "Operations of expired batches deleted by the retention window"
)

WEBHOOK_ATTEMPTS = Counter(
    "batchd_webhook_attempts",
    "Webhook delivery attempts, by outcome (delivered, status_5xx, timeout, address_refused, ...)",
    ["outcome"],
)


# labels() takes a lock and validates on every call: each child is kept.
@functools.cache
def _rpcs_by(method: str, code: str) -> Counter:
    return RPCS.labels(method, code)


@functools.cache
def _rpc_seconds_of(method: str) -> Histogram:
    return RPC_SECONDS.labels(method)


def rpc_finished(method: str, code: str, seconds: float) -> None:
    _rpcs_by(method, code).inc()
    _rpc_seconds_of(method).observe(seconds)


@functools.cache
def _operations_by(status: str) -> Counter:
    return OPERATIONS.labels(status)


def operation_finished(status: str, seconds: float) -> None:
    _operations_by(status).inc()
    UPSTREAM_SECONDS.observe(seconds)


@functools.cache
def _webhook_attempts_by(outcome: str) -> Counter:
    return WEBHOOK_ATTEMPTS.labels(outcome)


def webhook_attempted(outcome: str) -> None:
    _webhook_attempts_by(outcome).inc()


@functools.cache
def _throttled_by(tenant: str, status: int) -> Counter:
    return UPSTREAM_THROTTLED.labels(tenant, str(status))


def upstream_throttled(tenant: str, status: int) -> None:
    _throttled_by(tenant, status).inc()


def watch_tenant(tenant: str, window: Callable[[], float], pause: Callable[[], float]) -> None:
    """The tenant's concurrency window and pause, read when scraped."""
    UPSTREAM_CONCURRENCY.labels(tenant).set_function(window)
    UPSTREAM_PAUSE.labels(tenant).set_function(pause)


def serve(host: str, port: int) -> None:
    """Serves the metrics over HTTP, on a thread of prometheus-client's."""
    start_http_server(port, addr=host)
