"""How the service waits: how often it looks again when no one wakes it, and how it
backs off from a failure it retries (a busy SQLite file, the database, a lost LISTEN)."""

from __future__ import annotations

import asyncio

# Wake-ups (in-process and by NOTIFY) only shorten waits: whoever waits for work or
# for changes also looks again this often, so a lost wake-up costs at most this.
POLL_SECONDS = 0.5


class Backoff:
    """Waits that double after each failure, from `first` up to `cap`."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    async def wait(self) -> None:
        """Sleeps the current delay, then doubles it for the next failure."""
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.cap)

    def reset(self) -> None:
        """After a success: the next failure waits `first` again."""
        self.delay = self.first
