"""Wake-ups across replicas through PostgreSQL LISTEN/NOTIFY.

A replica that stores a new batch notifies `batchd_work`, so idle replicas
claim it at once instead of at their next poll; one that records results
notifies `batchd_changes`, so watchers served by other replicas see them
without delay. Notifications only shorten waits: every waiter also polls, so
a lost notification (or SQLite, where there are none) costs latency, never
correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)
WORK_CHANNEL = "batchd_work"
CHANGES_CHANNEL = "batchd_changes"
RECONNECT_CAP_SECONDS = 5.0


class Notifier:
    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.enabled = url.get_backend_name() == "postgresql"
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._connection: asyncpg.Connection | None = None
        self._listeners: dict[str, Callable[[], None]] = {}
        self._keeper: asyncio.Task[None] | None = None

    async def start(self, on_work: Callable[[], None], on_changes: Callable[[], None]) -> None:
        if not self.enabled:
            return
        self._listeners = {WORK_CHANNEL: on_work, CHANGES_CHANNEL: on_changes}
        self._keeper = asyncio.create_task(self._stay_connected(), name="notifier")

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()

    def work_available(self) -> None:
        self._notify(WORK_CHANNEL)

    def changed(self) -> None:
        self._notify(CHANGES_CHANNEL)

    def _notify(self, channel: str) -> None:
        connection = self._connection
        if connection is None or connection.is_closed():
            return
        task = asyncio.create_task(connection.execute(f"NOTIFY {channel}"))
        task.add_done_callback(_ignore_failure)

    async def _stay_connected(self) -> None:
        delay = 0.1
        while True:
            try:
                connection = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                connection.add_termination_listener(_calling(lost.set))
                for channel, callback in self._listeners.items():
                    await connection.add_listener(channel, _from_other_sessions(callback))
                self._connection, delay = connection, 0.1
                await lost.wait()
                log.warning("lost the LISTEN connection; reconnecting")
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("LISTEN connection failed (%s); retry in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_CAP_SECONDS)


def _from_other_sessions(callback: Callable[[], None]) -> Callable[..., None]:
    """PostgreSQL also delivers a NOTIFY to the session that sent it; this process
    woke its own engine and watchers directly before sending, so it skips those."""

    def on_notification(connection: asyncpg.Connection, pid: int, *_: Any) -> None:
        if pid != connection.get_server_pid():
            callback()

    return on_notification


def _calling(callback: Callable[[], None]) -> Callable[..., None]:
    def on_notification(*_: Any) -> None:
        callback()

    return on_notification


def _ignore_failure(task: asyncio.Task[Any]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if task.exception() is not None:
            log.debug("NOTIFY failed: %s", task.exception())
