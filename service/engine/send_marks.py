"""Sent marks: a POST or PATCH is recorded as about to go out before it does.

Recovery can then tell a claim that was only prefetched (back to pending) from
one whose request may have reached the upstream (failed as `interrupted`).
Operations that start together are marked together, one write for the group,
like results: each waits for its group's commit, then sends.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from service import claims
from service.claims import Claim
from service.database import Database
from service.engine.retrying import until_done

MAX_MARKS_PER_WRITE = 500


class SendMarks:
    def __init__(self, database: Database, owner: str) -> None:
        self.database = database
        self.owner = owner
        self._waiting: list[tuple[Claim, asyncio.Future[bool]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def mark(self, claim: Claim) -> bool:
        """Waits until the claim is marked sent; False if it was taken over (send nothing)."""
        marked: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((claim, marked))
        if self._writing is None:
            # Starts after the operations started with this one have queued theirs.
            self._writing = asyncio.create_task(self._write_all(), name="engine-send-marks")
        return await marked

    async def close(self) -> None:
        if self._writing is not None:
            self._writing.cancel()
            await asyncio.gather(self._writing, return_exceptions=True)

    async def _write_all(self) -> None:
        group: list[tuple[Claim, asyncio.Future[bool]]] = []
        try:
            while self._waiting:
                group = self._waiting[:MAX_MARKS_PER_WRITE]
                del self._waiting[:MAX_MARKS_PER_WRITE]
                wanted = [claim for claim, waiter in group if not waiter.done()]
                marked: set[str] = set()
                await until_done("mark sent", functools.partial(self._write, wanted, marked))
                for claim, waiter in group:
                    if not waiter.done():
                        waiter.set_result(claim.id in marked)
        except BaseException as error:
            for _, waiter in group + self._waiting:
                if not waiter.done():
                    waiter.set_exception(error)
            raise
        finally:
            self._writing = None

    async def _write(self, wanted: Sequence[Claim], marked: set[str]) -> None:
        async with self.database.write() as connection:
            marked.clear()  # a retry starts over
            marked.update(await claims.mark_sent(connection, self.owner, wanted))
