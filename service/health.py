"""The gRPC health status follows whether the service can do its job: write.

Once a second a real write goes to the database; while it fails (the database
unreachable or stalled, its disk full, the writer wedged) the status is
NOT_SERVING, and SERVING again as soon as a write succeeds. The gateway's
/healthz asks this status.
"""

from __future__ import annotations

import asyncio
import logging

from grpc_health.v1._async import HealthServicer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.database import Database
from service.server import set_serving

log = logging.getLogger(__name__)
HEALTH_CHECK_SECONDS = 1.0
# A write slower than this counts as failed: the database is stalled.
PROBE_TIMEOUT_SECONDS = 2.0


class HealthMonitor:
    def __init__(self, database: Database, health_servicer: HealthServicer) -> None:
        self.database = database
        self.health_servicer = health_servicer
        self.serving = True
        self._stopped = False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_CHECK_SECONDS)
            serving = await self._can_write()
            if serving != self.serving and not self._stopped:
                self.serving = serving
                log.warning("health: %s", "SERVING" if serving else "NOT_SERVING (cannot write)")
                await set_serving(self.health_servicer, serving)

    def stop(self) -> None:
        """From now on the status is the stop's to set."""
        self._stopped = True

    async def _can_write(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await self.database.probe_write()
        except (DBAPIError, PoolTimeout, OSError, TimeoutError):
            return False
        return True
