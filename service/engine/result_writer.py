"""The result writer: records finished operations in groups, one transaction each.

A write costs about the same for one result as for dozens, so results that
arrive together are written together. A result the database refuses must not
hold back the others: the group is then written one by one, and a result that
still cannot be stored is recorded as a failure saying so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable

from sqlalchemy.exc import StatementError

from service import claims
from service.claims import Recorded, Result
from service.database import Database, statement_refused
from service.engine.retrying import until_done
from service.models import OperationStatus
from service.signals import Signals

log = logging.getLogger(__name__)
MAX_RESULTS_PER_WRITE = 500
RESULTS_WORTH_A_WRITE = 32
RESULTS_LINGER_SECONDS = 0.005


class ResultWriter:
    def __init__(
        self,
        database: Database,
        owner: str,
        results: asyncio.Queue[Result],
        on_recorded: Callable[[list[Result], Recorded], None],
        signals: Signals,
    ) -> None:
        self.database = database
        self.owner = owner
        self.results = results
        self._on_recorded = on_recorded
        self._signals = signals

    async def run(self) -> None:
        while True:
            results = [await self.results.get()]
            if self.results.qsize() < RESULTS_WORTH_A_WRITE:
                # Let a few more results arrive to share the write.
                await asyncio.sleep(RESULTS_LINGER_SECONDS)
            while len(results) < MAX_RESULTS_PER_WRITE and not self.results.empty():
                results.append(self.results.get_nowait())
            await until_done("record results", functools.partial(self._record_all, results))
            for _ in results:
                self.results.task_done()

    async def _record_all(self, results: list[Result]) -> None:
        try:
            await self._record(results)
        except StatementError as error:
            if not statement_refused(error):
                raise  # the database is away: the group is retried
            log.error("a result group was refused (%s); recording one by one", type(error).__name__)
            for result in results:
                await self._record_alone(result)

    async def _record_alone(self, result: Result) -> None:
        try:
            await self._record([result])
        except StatementError as error:
            if not statement_refused(error):
                raise
            log.error("operation %s: its result was refused by the database", result.claim.id)
            unstorable = dataclasses.replace(
                result,
                status=OperationStatus.FAILED,
                response_status=None,
                response_body=None,
                failure_reason="unstorable_result",
            )
            await self._record([unstorable])

    async def _record(self, results: list[Result]) -> None:
        async with self.database.write() as connection:
            recorded = await claims.record_results(connection, self.owner, time.time(), results)
        self._on_recorded(results, recorded)
        self._signals.batch_changed()
