"""The long-lived streams a process serves, WatchBatch's events and ExportBatchOperations'
pages, counted against one budget: at most so many per tenant and in all. Each holds a task
and one HTTP/2 stream of the gateway's connection, so one tenant's open streams must not take
what every other tenant's calls need."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from service.errors import RetryLater

# Streams end when their batches finish or their pages are read: a refused client may
# look again soon.
RETRY_AFTER_SECONDS = 5.0


@dataclass(frozen=True)
class StreamLimits:
    per_tenant: int
    total: int


class StreamSlots:
    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self._by_tenant: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, tenant: str, kind: str) -> Iterator[None]:
        """Holds one of the tenant's streams while the block runs, or refuses it with
        `<kind>.too_many` (kind: `watch` or `export`)."""
        if self._by_tenant.total() >= self.limits.total:
            raise _too_many(kind, "this server holds as many streams as it may")
        if self._by_tenant[tenant] >= self.limits.per_tenant:
            raise _too_many(
                kind, f"at most {self.limits.per_tenant} event streams and exports per account"
            )
        self._by_tenant[tenant] += 1
        try:
            yield
        finally:
            self._by_tenant[tenant] -= 1
            if not self._by_tenant[tenant]:
                del self._by_tenant[tenant]


def _too_many(kind: str, message: str) -> RetryLater:
    return RetryLater(f"{kind}.too_many", f"Too many streams: {message}", RETRY_AFTER_SECONDS)
