"""The service's one backoff: doubling waits up to a cap, starting over after a success."""

from __future__ import annotations

from service.waiting import Backoff


async def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_reset() -> None:
    backoff = Backoff(0.001, 0.004)
    delays = []
    for _ in range(4):
        delays.append(backoff.delay)
        await backoff.wait()
    assert delays == [0.001, 0.002, 0.004, 0.004]
    backoff.reset()
    assert backoff.delay == 0.001
