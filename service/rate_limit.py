"""Per-tenant rate limit of batch creation: a token bucket per tenant, per process.

With several replicas each one enforces the limit on its own, so the cluster
allows up to replicas x the rate; that keeps the check free of database writes.
"""

from __future__ import annotations

import time

from service.errors import RetryLater


class RateLimited(RetryLater):
    def __init__(self, retry_after: float) -> None:
        super().__init__(
            "batch.rate_limited",
            f"Too many batches created; retry in {retry_after:.1f}s",
            retry_after,
        )


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
