"""The engine: a dispatcher and the side tasks that keep it honest, run together.

The dispatcher claims and runs operations; beside it the result writer records
their results, the lease keeper renews this process's leases and recovers
expired ones, the purge forgets expired idempotency keys, and the retention
deletes finished batches older than BATCH_RETENTION, and the webhook sender
delivers the events of finished batches. Each side task
retries database failures itself (retrying.py); one that ends any other way is
a bug, and the engine stops loudly rather than run on without it, as
procrastinate's worker does when a side task dies.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from service import metrics
from service.credentials import Sealer
from service.database import Database
from service.engine.dispatcher import Dispatcher
from service.engine.leases import LeaseKeeper
from service.engine.purge import IdempotencyKeyPurge
from service.engine.result_writer import ResultWriter
from service.engine.retention import BatchRetention
from service.engine.retrying import until_done
from service.engine.urls import Upstream
from service.engine.webhook_sender import WebhookSender
from service.settings import ServiceSettings
from service.signals import Signals

log = logging.getLogger(__name__)
PURGE_INTERVAL_SECONDS = 60.0
FINAL_WRITES_SECONDS = 2.0
SideTask = Callable[[], Coroutine[Any, Any, None]]


class Engine:
    def __init__(
        self,
        database: Database,
        settings: ServiceSettings,
        sealer: Sealer,
        upstream: Upstream,
        signals: Signals,
        extra_side_tasks: Mapping[str, SideTask] | None = None,
    ) -> None:
        """`extra_side_tasks` run beside the engine's own, watched the same way."""
        self.signals = signals
        self.owner = f"{uuid.uuid4()}"
        self.dispatcher = Dispatcher(
            database, settings, sealer, upstream, self.owner, self._background_died
        )
        self.writer = ResultWriter(
            database, self.owner, self.dispatcher.results, self.dispatcher.recorded, signals
        )
        self.leases = LeaseKeeper(
            database,
            settings,
            self.owner,
            held=lambda: self.dispatcher.held,
            on_recovered=self.dispatcher.wake,
        )
        self._side_tasks: dict[str, SideTask] = {
            "engine-results": self.writer.run,
            "engine-leases": self.leases.run,
            "engine-purge": IdempotencyKeyPurge(database, PURGE_INTERVAL_SECONDS).run,
            "engine-throttle": self.dispatcher.throttle.run,
            "engine-webhooks": WebhookSender(database, settings, sealer, self.owner).run,
            **self._retention(database, settings),
            **(extra_side_tasks or {}),
        }
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        # Set when the engine stopped of its own accord: a task of it died.
        self.died: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    @staticmethod
    def _retention(database: Database, settings: ServiceSettings) -> dict[str, SideTask]:
        retention = settings.retention_seconds()
        if not retention:
            return {}  # BATCH_RETENTION=0 keeps batches forever
        return {"engine-retention": BatchRetention(database, retention).run}

    async def start(self, on_death: Callable[[], None] = lambda: None) -> None:
        """Starts the engine; `on_death` is called if a task of it dies."""
        self._on_death = on_death
        self.dispatcher.open()
        # Read when scraped, rather than counted up and down on every operation.
        metrics.IN_FLIGHT.set_function(lambda: self.dispatcher.running)
        await until_done("recover", self.leases.recover_expired)
        await self.signals.start(self.dispatcher.wake, self.dispatcher.batch_canceled)
        runs = {"engine-dispatcher": self.dispatcher.run, **self._side_tasks}
        for name, run in runs.items():
            task = asyncio.create_task(run(), name=name)
            task.add_done_callback(self._task_done)
            self._tasks[name] = task

    def stop_claiming(self) -> None:
        """Claims and starts nothing more; what runs goes on. The stop's first step,
        taken before anything else of the process waits."""
        self._stopping = True
        self.dispatcher.stop_starting()
        dispatcher = self._tasks.get("engine-dispatcher")
        if dispatcher is not None:
            dispatcher.remove_done_callback(self._task_done)
            dispatcher.cancel()

    async def stop(self, grace: float) -> None:
        """Stops claiming, gives in-flight work `grace` seconds, releases the rest.

        Recording the last results and releasing claims get what is left of the
        grace, and at least FINAL_WRITES_SECONDS: a database that is away then
        cannot hold the stop (the claims' leases expire, and recovery follows).
        """
        deadline = asyncio.get_running_loop().time() + grace
        self.stop_claiming()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.remove_done_callback(self._task_done)
        await _cancelled(self._tasks.pop("engine-dispatcher"))
        await self.dispatcher.drain(grace)
        if not self._tasks["engine-results"].done():
            await _within(_final(deadline), "record results", self.writer.results.join())
        unsent = await self.dispatcher.close(_final(deadline))
        for task in tasks:
            await _cancelled(task)
        await self.signals.stop()
        await _within(_final(deadline), "release claims", self.leases.release(unsent))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A task ended before the engine stopped it: only a bug ends one."""
        error = task.exception() if not task.cancelled() else asyncio.CancelledError()
        self._die(task.get_name(), error or RuntimeError(f"{task.get_name()} returned"))

    def _background_died(self, task: asyncio.Task[int]) -> None:
        error = task.exception()
        assert error is not None
        self._die(task.get_name(), error)

    def _die(self, name: str, error: BaseException) -> None:
        if self.died.done():
            return
        log.critical("%s died; stopping the service", name, exc_info=error)
        self.died.set_result(error)
        if not self._stopping:  # else the stop under way ends as a death
            self._on_death()


def _final(deadline: float) -> float:
    return max(deadline - asyncio.get_running_loop().time(), FINAL_WRITES_SECONDS)


async def _within(seconds: float, what: str, step: Coroutine[Any, Any, None]) -> None:
    try:
        async with asyncio.timeout(seconds):
            await step
    except TimeoutError:
        log.error("stopping: could not %s within the shutdown grace", what)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
