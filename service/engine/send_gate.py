"""The send gate: a claim is marked sent in the database just before it is sent.

A cancel or a stop after a failure ends claims not yet marked, whichever
replica holds them; a claim the gate finds ended is dropped, never sent. Marks
asked for together share one write: the operations that slots free at once
wait for one round trip, not one each.
"""

from __future__ import annotations

import asyncio
import time

from service import claims
from service.claims import Claim
from service.database import Database
from service.engine.retrying import until_done


class SendGate:
    def __init__(self, database: Database, owner: str) -> None:
        self.database = database
        self.owner = owner
        self._waiting: list[tuple[Claim, asyncio.Future[bool]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def admit(self, claim: Claim) -> bool:
        """Whether the claim still stands, now marked sent: send it only if so."""
        admitted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((claim, admitted))
        if self._writing is None:
            self._writing = asyncio.create_task(self._write(), name="engine-send-gate")
        return await admitted

    async def close(self) -> None:
        """At the stop: a mark still being written is abandoned, its claims unsent."""
        if self._writing is not None:
            self._writing.cancel()
            await asyncio.gather(self._writing, return_exceptions=True)

    async def _write(self) -> None:
        try:
            while self._waiting:
                waiting, self._waiting = self._waiting, []
                try:
                    marked = await self._mark([claim for claim, _ in waiting])
                except Exception as error:  # a bug: those operations fail, saying so
                    for _, admitted in waiting:
                        if not admitted.done():  # a cancelled waiter wants nothing
                            admitted.set_exception(error)
                    continue
                for claim, admitted in waiting:
                    if not admitted.done():
                        admitted.set_result(claim.id in marked)
        finally:
            self._writing = None

    async def _mark(self, to_send: list[Claim]) -> set[str]:
        marked: set[str] = set()

        async def mark() -> None:
            async with self.database.write() as connection:
                marked.update(await claims.mark_sent(connection, self.owner, time.time(), to_send))

        await until_done("mark sent", mark)
        return marked
