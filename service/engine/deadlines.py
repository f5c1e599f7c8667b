"""Deadlines for many concurrent tasks, kept by one coarse timer.

asyncio.timeout schedules a timer per use and leaves it in the loop's heap once
cancelled: at thousands of operations a second that was 5% of the engine's time
(benchmarks, figure 3). Operation deadlines are seconds long, so a sweep every
RESOLUTION_SECONDS serves them all: a deadline fires at most that much late.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

RESOLUTION_SECONDS = 0.05


class Deadlines:
    def __init__(self) -> None:
        self._deadlines: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._sweep_scheduled = False

    def bound(self, seconds: float) -> Bound:
        """Cancels the current task after `seconds`; its block then raises TimeoutError.

        One bound per task at a time: they are kept by task."""
        return Bound(self, seconds)

    def _add(self, task: asyncio.Task[object], seconds: float) -> None:
        assert task not in self._deadlines, "one bound per task at a time"
        loop = asyncio.get_running_loop()
        self._deadlines[task] = loop.time() + seconds
        if not self._sweep_scheduled:
            self._sweep_scheduled = True
            loop.call_later(RESOLUTION_SECONDS, self._sweep)

    def _remove(self, task: asyncio.Task[object]) -> bool:
        """Forgets the task; True when its deadline had cancelled it."""
        del self._deadlines[task]
        if task in self._expired:
            self._expired.remove(task)
            return True
        return False

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, deadline in self._deadlines.items():
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._sweep_scheduled = bool(self._deadlines)
        if self._sweep_scheduled:
            loop.call_later(RESOLUTION_SECONDS, self._sweep)


class Bound:
    """A synchronous context manager: a task can only be cancelled at an await
    inside the block, so the block's exit never races the sweep."""

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = seconds

    def __enter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None, "deadlines bound tasks"
        self._task = task
        self._cancelling = task.cancelling()
        self._deadlines._add(task, self._seconds)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._deadlines._remove(self._task):
            return
        # As asyncio.timeout does: the cancellation is ours to turn into a
        # TimeoutError only when nobody else asked to cancel the task meanwhile.
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
