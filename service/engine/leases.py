"""Lease keeping and recovery: this process's claims stay its own, dead ones come back.

Every third of a lease the keeper renews the leases of the claims this process
holds, takes back operations whose lease expired (their replica died; never
this process's own, which may be late only because the database was), and
counts the pending operations for the metrics. At shutdown it gives back the
claims still held.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

from service import claims, metrics
from service.database import Database
from service.engine.retrying import until_done
from service.settings import ServiceSettings

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(
        self,
        database: Database,
        settings: ServiceSettings,
        owner: str,
        held: Callable[[], list[str]],
        on_recovered: Callable[[], None],
    ) -> None:
        self.database = database
        self.settings = settings
        self.owner = owner
        self._held = held
        self._on_recovered = on_recovered

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            await until_done("renew leases", self._renew)
            await until_done("recover", self.recover_expired)
            await until_done("count pending", self._count_pending)

    async def recover_expired(self) -> None:
        now = time.time()
        async with self.database.write() as connection:
            count = await claims.requeue(
                connection,
                now,
                self.settings.resend_interrupted,
                expired_before=now,
                not_owner=self.owner,
            )
        if count:
            metrics.LEASE_RECOVERIES.inc(count)
            log.warning("recovered %d operations whose lease expired", count)
            self._on_recovered()

    async def release(self, unsent: list[str]) -> None:
        """Gives back this process's claims: unsent ones simply go back to pending."""
        await until_done("release", functools.partial(self._release, unsent))

    async def _release(self, unsent: list[str]) -> None:
        now = time.time()
        async with self.database.write() as connection:
            await claims.unclaim(connection, self.owner, unsent, now)
            count = await claims.requeue(
                connection, now, self.settings.resend_interrupted, owner=self.owner
            )
        if count:
            log.warning("released %d operations still running at shutdown", count)

    async def _renew(self) -> None:
        async with self.database.write() as connection:
            await claims.renew_leases(
                connection, self.owner, self._held(), self.settings.lease_seconds
            )

    async def _count_pending(self) -> None:
        async with self.database.read() as connection:
            metrics.PENDING.set(await claims.count_pending(connection))
