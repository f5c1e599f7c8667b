"""Which claimed operations run next, and how many more to claim, fairly across batches.

Claims are prefetched: up to `prefetch` times the running limits may be
claimed, so a slot that frees refills from memory at once instead of waiting
for a database round trip. A batch limited to one operation at a time gets no
prefetch, so its operations run strictly in order. Free slots are dealt
round-robin, oldest batch first, and no batch runs more than its own limit,
so one huge batch cannot starve the others.

A claim counts until its result is recorded, not only while it runs: a batch
limited to one operation gets its next claim only after the previous result
is stored, so a failure can stop it before anything else is sent, and what a
killed process held (and may repeat) stays bounded by the room to claim.
These limits are this process's; the fleet-wide ones are kept in the database
(claims.py).

An item starts only if `may_start` agrees (the throttle lets its tenant in),
so an item that would only wait does not take a slot; claims of batches
`held` back (their tenant is throttled) do not count against the room to
claim either, so other batches' claims go on.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Scheduler(Generic[Item]):
    def __init__(self, max_running: int, max_running_per_batch: int, prefetch: int = 2) -> None:
        self.max_running = max_running
        self.max_running_per_batch = max_running_per_batch
        self.prefetch = prefetch
        self.max_claimed = max_running * prefetch
        self.running = 0
        self._ready: dict[str, deque[Item]] = {}
        self._limits: dict[str, int] = {}
        self._running_per_batch: Counter[str] = Counter()
        self._claimed_per_batch: Counter[str] = Counter()

    @property
    def claimed(self) -> int:
        return self._claimed_per_batch.total()

    def holds(self, batch_id: str) -> bool:
        """Whether any claim of the batch is held here, running or not."""
        return self._claimed_per_batch[batch_id] > 0

    def wants_more(self, held: Set[str] = frozenset()) -> bool:
        """Whether claiming is worth a round trip: room for half a running set, or nothing ready."""
        room = self.max_claimed - self._claimed_beside(held)
        nothing_ready = not any(batch_id not in held for batch_id in self._ready)
        return room >= max(1, self.max_running // 2) or (room > 0 and nothing_ready)

    def to_claim(self, limits: Mapping[str, int], held: Set[str] = frozenset()) -> dict[str, int]:
        """How many more operations to claim from each batch, given each one's running limit."""
        room = {}
        for batch_id, limit in limits.items():
            self._limits[batch_id] = limit = min(limit, self.max_running_per_batch)
            cap = limit if limit == 1 else limit * self.prefetch
            room[batch_id] = cap - self._claimed_per_batch[batch_id]
        return _deal(list(limits), self.max_claimed - self._claimed_beside(held), room)

    def to_start_at_once(self, claiming: Mapping[str, int]) -> dict[str, int]:
        """Of the operations about to be claimed, how many of each batch could start
        as soon as they arrive: free slots not already promised to ready claims."""
        ready = sum(len(items) for items in self._ready.values())
        room = {
            batch_id: min(
                count,
                self._limit(batch_id)
                - self._running_per_batch[batch_id]
                - len(self._ready.get(batch_id, ())),
            )
            for batch_id, count in claiming.items()
        }
        return _deal(list(claiming), self.max_running - self.running - ready, room)

    def add(self, batch_id: str, item: Item) -> None:
        self._ready.setdefault(batch_id, deque()).append(item)
        self._claimed_per_batch[batch_id] += 1

    def add_started(self, batch_id: str, item: Item) -> None:
        """A claim that starts as it arrives, in a slot `to_start_at_once` offered."""
        self._claimed_per_batch[batch_id] += 1
        self._limits.setdefault(batch_id, self.max_running_per_batch)
        self._running_per_batch[batch_id] += 1
        self.running += 1

    def startable(
        self, may_start: Callable[[str, Item], bool] = lambda _, __: True
    ) -> list[tuple[str, Item]]:
        """Claimed items to start now, round-robin within the running limits.

        A batch whose next item `may_start` refuses starts nothing more this time."""
        started: list[tuple[str, Item]] = []
        candidates = list(self._ready)
        while candidates and self.running < self.max_running:
            for batch_id in list(candidates):
                if self.running >= self.max_running:
                    break
                ready = self._ready[batch_id]
                full = self._running_per_batch[batch_id] >= self._limit(batch_id)
                if full or not may_start(batch_id, ready[0]):
                    candidates.remove(batch_id)
                    continue
                started.append((batch_id, ready.popleft()))
                self._running_per_batch[batch_id] += 1
                self.running += 1
                if not ready:
                    del self._ready[batch_id]
                    candidates.remove(batch_id)
        return started

    def not_started(self, batch_id: str, item: Item) -> None:
        """A started item could not start after all: first in its batch's line again."""
        self.finished(batch_id)
        self._ready.setdefault(batch_id, deque()).appendleft(item)

    def finished(self, batch_id: str) -> None:
        """An item stopped running; its claim stays counted until `recorded`."""
        self.running -= 1
        self._running_per_batch[batch_id] -= 1
        if self._running_per_batch[batch_id] <= 0:
            del self._running_per_batch[batch_id]

    def recorded(self, batch_id: str) -> None:
        """A finished item's result is stored: its claim no longer counts."""
        self._claimed_per_batch[batch_id] -= 1
        self._forget_if_idle(batch_id)

    def take_unstarted(self, batch_ids: Sequence[str] | None = None) -> list[Item]:
        """Removes and returns the claimed items not started yet (of these batches, or all)."""
        chosen = (
            list(self._ready) if batch_ids is None else [b for b in batch_ids if b in self._ready]
        )
        items: list[Item] = []
        for batch_id in chosen:
            ready = self._ready.pop(batch_id)
            items.extend(ready)
            self._claimed_per_batch[batch_id] -= len(ready)
            self._forget_if_idle(batch_id)
        return items

    def _claimed_beside(self, held: Set[str]) -> int:
        return sum(
            count for batch_id, count in self._claimed_per_batch.items() if batch_id not in held
        )

    def _limit(self, batch_id: str) -> int:
        return self._limits.get(batch_id, self.max_running_per_batch)

    def _forget_if_idle(self, batch_id: str) -> None:
        if self._claimed_per_batch[batch_id] <= 0:
            del self._claimed_per_batch[batch_id]
            self._limits.pop(batch_id, None)


def _deal(batch_ids: Sequence[str], free: int, room: Mapping[str, int]) -> dict[str, int]:
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
