"""The fleet's signals: "work available", "batch changed" and "batch canceled".

Each signal wakes this process's own listeners at once and, on PostgreSQL, the
other replicas through NOTIFY: a replica that stores a new batch tells idle
replicas to claim it now instead of at their next poll; one that records
results tells watchers served elsewhere. Signals only shorten waits: every
waiter also polls, so a lost notification (or SQLite, where there are none)
costs latency, never correctness. A cancel reaches every replica, its batch
id as the NOTIFY's payload: each drops the claims of the batch it holds unsent
(the cancel already recorded them `canceled`, and the send gate would refuse
them anyway: the signal only frees their slots sooner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from service.waiting import Backoff

log = logging.getLogger(__name__)
WORK_CHANNEL = "batchd_work"
CHANGES_CHANNEL = "batchd_changes"
CANCELED_CHANNEL = "batchd_canceled"
RECONNECT_CAP_SECONDS = 5.0


class Signals:
    def __init__(self, database_url: str) -> None:
        self._changed = asyncio.Event()
        self._on_work: Callable[[], None] = _ignore
        self._on_canceled: Callable[[str], None] = _ignore
        self._fleet = _Fleet(database_url)

    async def start(self, on_work: Callable[[], None], on_canceled: Callable[[str], None]) -> None:
        """Calls `on_work` whenever work may be waiting here or on another replica,
        `on_canceled` for each batch canceled here or on another replica."""
        self._on_work, self._on_canceled = on_work, on_canceled
        await self._fleet.start(
            {
                WORK_CHANNEL: _without_payload(on_work),
                CHANGES_CHANNEL: _without_payload(self._wake_watchers),
                CANCELED_CHANNEL: on_canceled,
            }
        )

    async def stop(self) -> None:
        await self._fleet.stop()

    def work_available(self) -> None:
        self._on_work()
        self._fleet.notify(WORK_CHANNEL)

    def batch_changed(self) -> None:
        self._wake_watchers()
        self._fleet.notify(CHANGES_CHANNEL)

    def batch_canceled(self, batch_id: str) -> None:
        self._on_canceled(batch_id)
        self._fleet.notify(CANCELED_CHANNEL, batch_id)
        self.batch_changed()

    async def wait_for_change(self, timeout: float) -> None:
        """Returns at the next "batch changed", or after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def _wake_watchers(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class _Fleet:
    """LISTEN and NOTIFY on one PostgreSQL connection, kept open; nothing on SQLite."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.enabled = url.get_backend_name() == "postgresql"
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._connection: asyncpg.Connection | None = None
        self._listeners: dict[str, Callable[[str], None]] = {}
        self._keeper: asyncio.Task[None] | None = None

    async def start(self, listeners: dict[str, Callable[[str], None]]) -> None:
        """`listeners`: what to call, with the payload, on each channel's notifications."""
        if not self.enabled:
            return
        self._listeners = listeners
        self._keeper = asyncio.create_task(self._stay_connected(), name="signals")

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()

    def notify(self, channel: str, payload: str = "") -> None:
        connection = self._connection
        if connection is None or connection.is_closed():
            return
        task = asyncio.create_task(connection.execute("SELECT pg_notify($1, $2)", channel, payload))
        task.add_done_callback(_ignore_failure)

    async def _stay_connected(self) -> None:
        backoff = Backoff(0.1, RECONNECT_CAP_SECONDS)
        while True:
            try:
                connection = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                connection.add_termination_listener(_calling(lost.set))
                for channel, callback in self._listeners.items():
                    await connection.add_listener(channel, _from_other_sessions(callback))
                self._connection = connection
                backoff.reset()
                await lost.wait()
                log.warning("lost the LISTEN connection; reconnecting")
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("LISTEN connection failed (%s); retry in %.1fs", error, backoff.delay)
                await backoff.wait()


def _from_other_sessions(callback: Callable[[str], None]) -> Callable[..., None]:
    """PostgreSQL also delivers a NOTIFY to the session that sent it; this process
    woke its own listeners directly before sending, so it skips those."""

    def on_notification(connection: asyncpg.Connection, pid: int, _: str, payload: str) -> None:
        if pid != connection.get_server_pid():
            callback(payload)

    return on_notification


def _without_payload(callback: Callable[[], None]) -> Callable[[str], None]:
    def on_notification(_: str) -> None:
        callback()

    return on_notification


def _calling(callback: Callable[[], None]) -> Callable[..., None]:
    def on_notification(*_: Any) -> None:
        callback()

    return on_notification


def _ignore(*_: Any) -> None:
    """Signals sent before the engine listens: it claims what is waiting when it starts."""


def _ignore_failure(task: asyncio.Task[Any]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if task.exception() is not None:
            log.debug("NOTIFY failed: %s", task.exception())
