"""Per-tenant rate limit of batch creation: a token bucket per tenant, per process.

With several replicas each one enforces the limit on its own, so the cluster
allows up to replicas x the rate; that keeps the check free of database writes.
"""

from __future__ import annotations

import time

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from service.errors import ApiError


class RateLimited(ApiError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "batch.rate_limited",
            f"Too many batches created; retry in {retry_after:.1f}s",
        )
        self.retry_after = retry_after

    def extra_details(self) -> list[object]:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(max(1, int(self.retry_after * 1000)))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]


class CreateRateLimiter:
    def __init__(self, per_second: float, burst: int) -> None:
        self.per_second = per_second
        self.burst = burst
        # tenant -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, tenant: str) -> None:
        """Takes one token for the tenant, or raises RateLimited."""
        if self.per_second <= 0:
            return
        now = time.monotonic()
        tokens, counted_at = self._buckets.get(tenant, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - counted_at) * self.per_second)
        if tokens < 1:
            self._buckets[tenant] = (tokens, now)
            raise RateLimited((1 - tokens) / self.per_second)
        self._buckets[tenant] = (tokens - 1, now)
