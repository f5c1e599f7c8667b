"""Prometheus metrics of the service process (the default registry).

`batchd` serves them on the gateway's /metrics; `python -m service` on
BATCH_METRICS_ADDRESS when set.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import time
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

RPCS = Counter("batchd_rpc_requests", "gRPC calls handled", ["method", "code"])
RPC_SECONDS = Histogram("batchd_rpc_duration_seconds", "gRPC call latency", ["method"])
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
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


class _Outcomes(Collector):
    """batchd_operations_executed (a counter by status) and
    batchd_upstream_duration_seconds (a histogram), exposed as prometheus-client's
    Counter and Histogram expose them, created series included.

    Kept as plain numbers: the library's metrics take a lock on every update and
    walk the buckets in Python, about 3 us an operation at thousands a second
    (benchmarks, figure 3). Only the event loop's thread updates them; a scrape
    from the metrics thread reads numbers the GIL keeps whole.
    """

    def __init__(self) -> None:
        self._created = time.time()
        self._by_status: dict[str, int] = {}
        self._status_created: dict[str, float] = {}
        self._bounds = (*UPSTREAM_BUCKETS, math.inf)
        self._in_bucket = [0] * len(self._bounds)
        self._sum = 0.0

    def finished(self, status: str, seconds: float) -> None:
        count = self._by_status.get(status)
        if count is None:
            self._status_created[status] = time.time()
            count = 0
        self._by_status[status] = count + 1
        # The first bound at or above: a bucket counts what is <= its bound.
        self._in_bucket[bisect.bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def collect(self) -> Iterator[Metric]:
        operations = CounterMetricFamily(
            "batchd_operations_executed", "Operations finished, by outcome", labels=["status"]
        )
        for status, count in list(self._by_status.items()):
            operations.add_metric([status], count, created=self._status_created[status])
        yield operations
        durations = HistogramMetricFamily(
            "batchd_upstream_duration_seconds",
            "Time from first send to outcome of an operation, retries included",
        )
        cumulative = itertools.accumulate(list(self._in_bucket))
        buckets = [
            (floatToGoString(b), float(n)) for b, n in zip(self._bounds, cumulative, strict=True)
        ]
        durations.add_metric([], buckets, self._sum)
        durations.add_sample("batchd_upstream_duration_seconds_created", {}, self._created)
        yield durations


_OUTCOMES = _Outcomes()
REGISTRY.register(_OUTCOMES)


def operation_finished(status: str, seconds: float) -> None:
    _OUTCOMES.finished(status, seconds)


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
