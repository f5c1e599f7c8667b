"""Deadlines kept by one sweep: they fire, late by at most the sweep's interval, and
they never swallow a cancellation that is not theirs."""

from __future__ import annotations

import asyncio

import pytest

from service.engine.deadlines import RESOLUTION_SECONDS, Deadlines


async def test_a_block_past_its_deadline_raises_timeout_error() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError), deadlines.bound(0.1):
        await asyncio.sleep(10)
    waited = loop.time() - started
    assert 0.1 <= waited < 0.1 + RESOLUTION_SECONDS + 0.5


async def test_a_block_in_time_is_left_alone_and_later_awaits_go_on() -> None:
    deadlines = Deadlines()
    with deadlines.bound(0.05):
        await asyncio.sleep(0)
    # Past the deadline the block had: nothing may cancel the task now.
    await asyncio.sleep(0.05 + 3 * RESOLUTION_SECONDS)


async def test_many_tasks_each_get_their_own_deadline() -> None:
    deadlines = Deadlines()

    async def sleeper(seconds: float) -> str:
        try:
            with deadlines.bound(0.2):
                await asyncio.sleep(seconds)
        except TimeoutError:
            return "timed out"
        return "done"

    outcomes = await asyncio.gather(*(sleeper(s) for s in (0.01, 5, 0.02, 5)))
    assert outcomes == ["done", "timed out", "done", "timed out"]


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines()

    async def bounded() -> None:
        with deadlines.bound(10):
            await asyncio.sleep(10)

    task = asyncio.create_task(bounded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
