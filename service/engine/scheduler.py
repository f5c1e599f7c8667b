"""Which claimed operations run next, and how many more to claim, fairly across batches.

Claims are prefetched: up to `prefetch` times the running limits may be
claimed, so a slot that frees refills from memory at once instead of waiting
for a database round trip. Free slots are dealt round-robin, oldest batch
first, and no batch runs more than its own limit, so one huge batch cannot
starve the others.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Scheduler(Generic[Item]):
    def __init__(self, max_running: int, max_running_per_batch: int, prefetch: int = 2) -> None:
        self.max_running = max_running
        self.max_running_per_batch = max_running_per_batch
        self.max_claimed = max_running * prefetch
        self.max_claimed_per_batch = max_running_per_batch * prefetch
        self.running = 0
        self._ready: dict[str, deque[Item]] = {}
        self._running_per_batch: Counter[str] = Counter()
        self._claimed_per_batch: Counter[str] = Counter()

    @property
    def claimed(self) -> int:
        return self._claimed_per_batch.total()

    def to_claim(self, batch_ids: Sequence[str]) -> dict[str, int]:
        """How many more operations to claim from each of these batches."""
        room = {
            batch_id: self.max_claimed_per_batch - self._claimed_per_batch[batch_id]
            for batch_id in batch_ids
        }
        return _deal(batch_ids, self.max_claimed - self.claimed, room)

    def add(self, batch_id: str, item: Item) -> None:
        self._ready.setdefault(batch_id, deque()).append(item)
        self._claimed_per_batch[batch_id] += 1

    def startable(self) -> list[tuple[str, Item]]:
        """Claimed items to start now, within the running limits."""
        room = {
            batch_id: min(
                len(ready), self.max_running_per_batch - self._running_per_batch[batch_id]
            )
            for batch_id, ready in self._ready.items()
        }
        dealt = _deal(list(self._ready), self.max_running - self.running, room)
        started: list[tuple[str, Item]] = []
        for batch_id, count in dealt.items():
            ready = self._ready[batch_id]
            started.extend((batch_id, ready.popleft()) for _ in range(count))
            if not ready:
                del self._ready[batch_id]
            self._running_per_batch[batch_id] += count
        self.running += len(started)
        return started

    def finished(self, batch_id: str) -> None:
        self.running -= 1
        self._running_per_batch[batch_id] -= 1
        self._claimed_per_batch[batch_id] -= 1
        for counter in (self._running_per_batch, self._claimed_per_batch):
            if counter[batch_id] <= 0:
                del counter[batch_id]

    def take_unstarted(self) -> list[Item]:
        """Removes and returns every claimed item not started yet."""
        items = [item for ready in self._ready.values() for item in ready]
        for batch_id, ready in self._ready.items():
            self._claimed_per_batch[batch_id] -= len(ready)
        self._ready.clear()
        self._claimed_per_batch = +self._claimed_per_batch
        return items


def _deal(batch_ids: Sequence[str], free: int, room: dict[str, int]) -> dict[str, int]:
    """Deals `free` units one at a time, round-robin, within each batch's room."""
    dealt: dict[str, int] = {}
    while free > 0:
        progressed = False
        for batch_id in batch_ids:
            if free == 0:
                break
            if room[batch_id] > dealt.get(batch_id, 0):
                dealt[batch_id] = dealt.get(batch_id, 0) + 1
                free -= 1
                progressed = True
        if not progressed:
            break
    return dealt
