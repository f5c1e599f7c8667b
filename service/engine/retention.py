"""Deletes finished batches once they are older than BATCH_RETENTION.

Continuously, one small transaction after another (lifecycle.py), yielding
between chunks so that claims and results interleave with it; on PostgreSQL
one replica at a time, by an advisory lock that each chunk takes afresh, so a
replica that dies mid-purge leaves the rest to the others.
"""

from __future__ import annotations

import asyncio
import time

from service import lifecycle, metrics
from service.database import Database
from service.engine.retrying import until_done

# A pause between chunks, letting other writers (SQLite's single writer above all) in.
CHUNK_PAUSE_SECONDS = 0.01
MAX_INTERVAL_SECONDS = 60.0


class BatchRetention:
    def __init__(self, database: Database, retention_seconds: float) -> None:
        self.database = database
        self.retention_seconds = retention_seconds
        # A batch outlives its retention by at most about a quarter of it.
        self.interval = min(MAX_INTERVAL_SECONDS, max(0.5, retention_seconds / 4))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._purge_expired()

    async def _purge_expired(self) -> None:
        """Chunk after chunk, until none is left."""
        while True:
            if not await until_done("purge expired batches", self._purge_chunk):
                return
            await asyncio.sleep(CHUNK_PAUSE_SECONDS)

    async def _purge_chunk(self) -> int:
        """Purges one chunk; the rows deleted, 0 when none are left (or another
        replica is purging)."""
        async with self.database.write() as connection:
            purged = await lifecycle.purge_expired_chunk(
                connection, time.time() - self.retention_seconds
            )
        if purged is None:
            return 0
        metrics.BATCHES_PURGED.inc(purged.batches)
        metrics.OPERATIONS_PURGED.inc(purged.operations)
        return purged.rows
