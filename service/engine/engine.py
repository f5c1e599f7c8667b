"""The engine: claims pending operations fairly, runs them, records their results.

One dispatcher task claims work whenever slots are free, a flusher writes
results in groups (one transaction for many operations), a keeper renews this
process's leases and recovers expired ones. A new batch wakes the dispatcher
at once; a poll covers work created by other replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from sqlalchemy.exc import DBAPIError, StatementError

from service import metrics, store
from service.batch_commands import REQUEST_ID_TTL_SECONDS
from service.credentials import Sealer
from service.database import Database, statement_refused
from service.engine import queue
from service.engine.executor import Executor, Outcome
from service.engine.scheduler import Scheduler
from service.engine.urls import Upstream
from service.models import OperationStatus
from service.notifications import Notifier
from service.settings import ServiceSettings
from service.watch import Changes

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
MAX_RESULTS_PER_WRITE = 500
RESULTS_WORTH_A_WRITE = 32
RESULTS_LINGER_SECONDS = 0.005
MAX_CANDIDATE_BATCHES = 256
DB_RETRY_CAP = 5.0


class Engine:
    def __init__(
        self,
        database: Database,
        settings: ServiceSettings,
        sealer: Sealer,
        upstream: Upstream,
        changes: Changes,
        notifier: Notifier,
    ) -> None:
        self.changes = changes
        self.notifier = notifier
        self.database = database
        self.settings = settings
        self.sealer = sealer
        self.upstream = upstream
        self.owner = f"{uuid.uuid4()}"
        self._wake = asyncio.Event()
        self._results: asyncio.Queue[queue.Result] = asyncio.Queue()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._scheduler: Scheduler[Job] = Scheduler(
            settings.max_in_flight, settings.max_in_flight_per_batch
        )
        # Claimed and not yet recorded: their leases must stay renewed.
        self._held: set[str] = set()
        self._authorizations: dict[str, str | None] = {}
        self._stopping = False
        # Batches that stop on failure and just failed, until that is stored.
        self._failed_batches: set[str] = set()
        self._background: set[asyncio.Task[int]] = set()
        self._session: aiohttp.ClientSession | None = None

    def wake(self) -> None:
        self._wake.set()

    def batch_created(self) -> None:
        """Starts a new batch here at once, and tells idle replicas about it."""
        self._wake.set()
        self.notifier.work_available()

    async def start(self) -> None:
        limit = self.settings.max_in_flight
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit)
        # The executor bounds each operation (retries included) with its own
        # deadline; aiohttp's per-request timer would only cost a timer per call.
        # One session serves every tenant, so it must keep no cookies: one kept
        # from an upstream's answer would be sent on behalf of the next callers.
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._executor = Executor(
            self._session,
            self.upstream,
            self.settings.operation_timeout,
            self.settings.max_retries,
            self.settings.max_response_bytes,
        )
        # Read when scraped, rather than counted up and down on every operation.
        metrics.IN_FLIGHT.set_function(lambda: len(self._running))
        await self._with_db_retry("recover", self._recover_expired)
        self._flusher = asyncio.create_task(self._flush_results(), name="engine-flusher")
        self._dispatcher = asyncio.create_task(self._dispatch(), name="engine-dispatcher")
        self._keeper = asyncio.create_task(self._keep_leases(), name="engine-leases")

    async def stop(self, grace: float) -> None:
        """Stops claiming, gives in-flight work `grace` seconds, releases the rest."""
        self._stopping = True
        await _cancelled(self._dispatcher)
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=grace)
        unfinished = list(self._running.values())
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        await self._results.join()
        await asyncio.gather(*self._background)
        await _cancelled(self._flusher)
        await _cancelled(self._keeper)
        unsent = [job.claim.id for job in self._scheduler.take_unstarted()]
        await self._with_db_retry("release", functools.partial(self._release_own, unsent))
        if self._session is not None:
            await self._session.close()

    async def _dispatch(self) -> None:
        while not self._stopping:
            self._wake.clear()
            claimed = 0
            if self._scheduler.wants_more():
                claimed = await self._with_db_retry("claim", self._claim)
            if claimed == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    async def _claim(self) -> int:
        async with self.database.read() as connection:
            candidates = await queue.batches_with_pending_work(connection, MAX_CANDIDATE_BATCHES)
        wanted = self._scheduler.to_claim(
            {
                batch.id: self._limit(batch)
                for batch in candidates
                if batch.id not in self._failed_batches
            }
        )
        if not wanted:
            return 0
        now = time.time()
        async with self.database.write() as connection:
            claims = await queue.claim(
                connection, self.owner, now, now + self.settings.lease_seconds, wanted
            )
        by_id = {batch.id: batch for batch in candidates}
        for claim in claims:
            batch = by_id[claim.batch_id]
            authorization = self._authorization(batch.id, batch.sealed_authorization)
            self._held.add(claim.id)
            job = Job(claim, authorization, batch.correlation_id, batch.stop_on_failure)
            self._scheduler.add(batch.id, job)
        self._start_ready()
        return len(claims)

    def _limit(self, batch: queue.ActiveBatch) -> int:
        if batch.sequential:
            return 1
        return batch.max_concurrency or self.settings.max_in_flight_per_batch

    def batch_canceled(self, batch_id: str) -> None:
        """Drops this process's unsent claims of a canceled batch."""
        self._cancel_unsent([batch_id])

    def _cancel_unsent(self, batch_ids: list[str]) -> None:
        unsent = [job.claim.id for job in self._scheduler.take_unstarted(batch_ids)]
        if unsent:
            task = asyncio.create_task(
                self._with_db_retry("cancel claims", functools.partial(self._cancel_claims, unsent))
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _cancel_claims(self, operation_ids: list[str]) -> None:
        async with self.database.write() as connection:
            await queue.cancel_claims(connection, self.owner, operation_ids, time.time())
        self._held.difference_update(operation_ids)

    def _start_ready(self) -> None:
        if self._stopping:
            return
        for _, job in self._scheduler.startable():
            self._running[job.claim.id] = asyncio.create_task(self._run(job))

    def _authorization(self, batch_id: str, sealed: bytes | None) -> str | None:
        """The batch's Authorization value; "" when it was sealed under another key."""
        if batch_id not in self._authorizations:
            if len(self._authorizations) > 10_000:
                self._authorizations.clear()
            unsealed = self.sealer.unseal(sealed) if sealed else None
            self._authorizations[batch_id] = "" if sealed and unsealed is None else unsealed
        return self._authorizations[batch_id]

    async def _run(self, job: Job) -> None:
        claim = job.claim
        started = time.perf_counter()
        try:
            if job.authorization == "":
                # Sending without the caller's credentials could act as nobody, or
                # as someone else: refuse.
                outcome = Outcome(OperationStatus.FAILED, failure_reason="credentials_unavailable")
            else:
                outcome = await self._executor.execute(claim, job.authorization, job.request_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("operation %s could not be executed", claim.id)
            outcome = Outcome(OperationStatus.FAILED, failure_reason="internal_error", attempts=1)
        finally:
            del self._running[claim.id]
            self._scheduler.finished(claim.batch_id)
            self._start_ready()
            self._wake.set()
        _observe(job, outcome, time.perf_counter() - started)
        if job.stop_on_failure and outcome.is_failure:
            # Send nothing more of this batch while the failure is being stored.
            self._failed_batches.add(claim.batch_id)
            self._cancel_unsent([claim.batch_id])
        self._results.put_nowait(
            queue.Result(
                claim.id,
                claim.batch_id,
                claim.generation,
                outcome.status,
                outcome.response_status,
                outcome.response_body,
                outcome.failure_reason,
                claim.attempts + outcome.attempts,
            )
        )

    async def _flush_results(self) -> None:
        while True:
            results = [await self._results.get()]
            if self._results.qsize() < RESULTS_WORTH_A_WRITE:
                # Let a few more results arrive: a write costs about the same
                # for one result as for dozens.
                await asyncio.sleep(RESULTS_LINGER_SECONDS)
            while len(results) < MAX_RESULTS_PER_WRITE and not self._results.empty():
                results.append(self._results.get_nowait())
            await self._with_db_retry(
                "record results", functools.partial(self._record_all, results)
            )
            for _ in results:
                self._results.task_done()

    async def _record_all(self, results: list[queue.Result]) -> None:
        """Records a group; a result the database refuses must not hold back the others."""
        try:
            await self._record(results)
        except StatementError as error:
            if not statement_refused(error):
                raise  # the database is away: the group is retried
            log.error("a result group was refused (%s); recording one by one", type(error).__name__)
            for result in results:
                await self._record_alone(result)

    async def _record_alone(self, result: queue.Result) -> None:
        try:
            await self._record([result])
        except StatementError as error:
            if not statement_refused(error):
                raise
            log.error("operation %s: its result was refused by the database", result.id)
            unstorable = dataclasses.replace(
                result,
                status=OperationStatus.FAILED,
                response_status=None,
                response_body=None,
                failure_reason="unstorable_result",
            )
            await self._record([unstorable])

    async def _record(self, results: list[queue.Result]) -> None:
        async with self.database.write() as connection:
            recorded = await queue.record_results(connection, self.owner, time.time(), results)
        self._held.difference_update(result.id for result in results)
        for result in results:
            self._scheduler.recorded(result.batch_id)
        self._wake.set()  # their claims no longer count: there may be room to claim
        # Their pending operations are canceled in the database now.
        self._failed_batches.difference_update(recorded.stopped_batches)
        self.changes.notify()
        self.notifier.changed()
        for batch_id in recorded.finished_batches:
            self._authorizations.pop(batch_id, None)
        self._cancel_unsent(recorded.stopped_batches)

    async def _keep_leases(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            await self._with_db_retry("renew leases", self._renew)
            await self._with_db_retry("recover", self._recover_expired)
            await self._with_db_retry("count pending", self._count_pending)

    async def _count_pending(self) -> None:
        async with self.database.read() as connection:
            metrics.PENDING.set(await queue.count_pending(connection))

    async def _renew(self) -> None:
        now = time.time()
        async with self.database.write() as connection:
            await queue.renew_leases(
                connection, self.owner, list(self._held), now + self.settings.lease_seconds
            )
            await store.purge_create_requests(connection, now - REQUEST_ID_TTL_SECONDS)

    async def _recover_expired(self) -> None:
        now = time.time()
        async with self.database.write() as connection:
            count = await queue.requeue(
                connection, now, self.settings.resend_interrupted, expired_before=now
            )
        if count:
            metrics.LEASE_RECOVERIES.inc(count)
            log.warning("recovered %d operations whose lease expired", count)
            self._wake.set()

    async def _release_own(self, unsent: list[str]) -> None:
        """Gives back this process's claims at shutdown: unsent ones simply go back to pending."""
        now = time.time()
        async with self.database.write() as connection:
            await queue.unclaim(connection, self.owner, unsent, now)
            count = await queue.requeue(
                connection, now, self.settings.resend_interrupted, owner=self.owner
            )
        if count:
            log.warning("released %d operations still running at shutdown", count)

    async def _with_db_retry(self, what: str, action: Callable[[], Awaitable[int | None]]) -> int:
        """Runs a database step until it succeeds: results must never be dropped,
        and the engine's loops must never die of one bad step."""
        delay = 0.1
        while True:
            try:
                return await action() or 0
            except DBAPIError as error:
                log.warning("%s failed (%s); retrying in %.1fs", what, type(error).__name__, delay)
            except Exception:
                log.exception("%s failed; retrying in %.1fs", what, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, DB_RETRY_CAP)


@dataclass(frozen=True)
class Job:
    """A claimed operation with what its request needs from its batch."""

    claim: queue.Claim
    # The caller's Authorization value; "" when it cannot be unsealed.
    authorization: str | None = field(repr=False)
    request_id: str | None
    stop_on_failure: bool


def _observe(job: Job, outcome: Outcome, seconds: float) -> None:
    metrics.operation_finished(outcome.status, seconds)
    if not log.isEnabledFor(logging.INFO):
        return  # thousands a second: skip building the event nobody logs
    log.info(
        "operation finished",
        extra={
            "request_id": job.request_id,
            "operation_id": job.claim.id,
            "batch_id": job.claim.batch_id,
            "status": str(outcome.status),
            "response_status": outcome.response_status,
            "failure_reason": outcome.failure_reason,
            "attempts": outcome.attempts,
            "duration_ms": round(seconds * 1000, 3),
        },
    )


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
