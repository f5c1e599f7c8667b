"""The send gate: a prefetched claim is marked sent in the database just before it is sent.

A cancel or a stop after a failure ends claims not yet marked, whichever
replica holds them; a claim the gate finds ended is dropped, never sent. The
mark also keeps the batch within its fleet-wide running limit: a claim beyond
the room left waits for another turn (claims.mark_within_limits). Marks asked
for together share one write: the operations that slots free at once wait for
one round trip, not one each.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Collection, Mapping

from service import claims
from service.claims import Claim
from service.database import Database
from service.engine.retrying import until_done


class Verdict(enum.Enum):
    SEND = "send"
    # Its batch runs its limit already, fleet-wide: ask again later.
    NO_ROOM = "no_room"
    # A cancel, a stop or a recovery ended the claim: never send it.
    ENDED = "ended"


class SendGate:
    def __init__(
        self,
        database: Database,
        owner: str,
        finished: Callable[[], Mapping[str, Collection[str]]],
    ) -> None:
        """`finished`: this owner's claims, by batch, that run no more (read per write)."""
        self.database = database
        self.owner = owner
        self._finished = finished
        self._waiting: list[tuple[Claim, asyncio.Future[Verdict]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def admit(self, claim: Claim) -> Verdict:
        """Whether to send the claim now (then it is marked sent), later, or never."""
        admitted: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
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
                    marks = await self._mark([claim for claim, _ in waiting])
                except Exception as error:  # a bug: those operations fail, saying so
                    for _, admitted in waiting:
                        if not admitted.done():  # a cancelled waiter wants nothing
                            admitted.set_exception(error)
                    continue
                for claim, admitted in waiting:
                    if not admitted.done():
                        admitted.set_result(_verdict(claim, marks))
        finally:
            self._writing = None

    async def _mark(self, to_send: list[Claim]) -> claims.Marks:
        marks = claims.Marks(set(), set())

        async def mark() -> None:
            nonlocal marks
            async with self.database.write_statement() as connection:
                marks = await claims.mark_within_limits(
                    connection, self.owner, time.time(), to_send, self._finished()
                )

        await until_done("mark sent", mark)
        return marks


def _verdict(claim: Claim, marks: claims.Marks) -> Verdict:
    if claim.id in marks.sent:
        return Verdict.SEND
    return Verdict.NO_ROOM if claim.id in marks.no_room else Verdict.ENDED
