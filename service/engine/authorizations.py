"""The callers' Authorization values of running batches, unsealed once per batch."""

from __future__ import annotations

from service.credentials import Sealer

MAX_CACHED = 10_000


class Authorizations:
    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer
        self._by_batch: dict[str, str | None] = {}

    def of(self, batch_id: str, sealed: bytes | None) -> str | None:
        """The batch's Authorization value; "" when it was sealed under another key."""
        if batch_id not in self._by_batch:
            if len(self._by_batch) > MAX_CACHED:
                self._by_batch.clear()
            unsealed = self.sealer.unseal(sealed) if sealed else None
            self._by_batch[batch_id] = "" if sealed and unsealed is None else unsealed
        return self._by_batch[batch_id]

    def forget(self, batch_id: str) -> None:
        """The batch finished or was canceled: nothing of it will be sent any more."""
        self._by_batch.pop(batch_id, None)

    def __contains__(self, batch_id: str) -> bool:
        return batch_id in self._by_batch
