"""Forgets CreateBatch's idempotency keys once they expire."""

from __future__ import annotations

import asyncio
import time

from service import idempotency_keys
from service.database import Database
from service.engine.retrying import until_done


class IdempotencyKeyPurge:
    def __init__(self, database: Database, interval: float) -> None:
        self.database = database
        self.interval = interval

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await until_done("purge idempotency keys", self._purge)

    async def _purge(self) -> None:
        async with self.database.write() as connection:
            await idempotency_keys.purge_expired(connection, time.time())
