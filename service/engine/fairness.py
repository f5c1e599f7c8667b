"""How free execution slots are shared among batches waiting for them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def share_slots(
    batch_ids: Sequence[str], free: int, per_batch_limit: int, running: Mapping[str, int]
) -> dict[str, int]:
    """Deals free slots one at a time, round-robin, oldest batch first.

    No batch gets more than `per_batch_limit` operations running, so one huge
    batch cannot starve the others.
    """
    room = {batch_id: per_batch_limit - running.get(batch_id, 0) for batch_id in batch_ids}
    wanted: dict[str, int] = {}
    while free > 0:
        dealt = False
        for batch_id in batch_ids:
            if free == 0:
                break
            if room[batch_id] > wanted.get(batch_id, 0):
                wanted[batch_id] = wanted.get(batch_id, 0) + 1
                free -= 1
                dealt = True
        if not dealt:
            break
    return wanted
