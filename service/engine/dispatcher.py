"""The dispatcher: claims pending operations whenever slots are free, and runs them.

Claims are dealt fairly across batches by the scheduler; each claimed
operation runs as a task of its own, passes the send gate (a cancel may have
ended it), and its result goes to the result writer's queue. A claim stays
held (its lease renewed) until its result is recorded. New work wakes the
dispatcher at once; a poll covers the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp

from batchd import tracing
from service import claims, metrics
from service.claims import Claim, Recorded, Result
from service.credentials import Sealer
from service.database import Database
from service.engine.authorizations import Authorizations
from service.engine.executor import Executor
from service.engine.retrying import until_done
from service.engine.scheduler import Scheduler
from service.engine.send_gate import SendGate
from service.engine.throttle import Throttle
from service.engine.urls import Upstream
from service.models import OperationStatus
from service.settings import ServiceSettings
from service.waiting import POLL_SECONDS

log = logging.getLogger(__name__)
MAX_CANDIDATE_BATCHES = 256


@dataclass(frozen=True)
class Job:
    """A claimed operation with what its request needs from its batch."""

    claim: Claim
    # The caller's Authorization value; "" when it cannot be unsealed.
    authorization: str | None = field(repr=False)
    correlation_id: str | None
    stop_on_failure: bool
    traceparent: str | None


class Dispatcher:
    def __init__(
        self,
        database: Database,
        settings: ServiceSettings,
        sealer: Sealer,
        upstream: Upstream,
        owner: str,
        on_task_died: Callable[[asyncio.Task[int]], None],
    ) -> None:
        self.database = database
        self.settings = settings
        self.upstream = upstream
        self.owner = owner
        self.results: asyncio.Queue[Result] = asyncio.Queue()
        self._on_task_died = on_task_died
        self._wake = asyncio.Event()
        self._stopping = False
        self._scheduler: Scheduler[Job] = Scheduler(
            settings.max_in_flight, settings.max_in_flight_per_batch
        )
        self._running: dict[str, asyncio.Task[None]] = {}
        # Claimed and not yet recorded: their leases must stay renewed.
        self._held: set[str] = set()
        self._authorizations = Authorizations(sealer)
        self._gate = SendGate(database, owner)
        # Batches that stop on failure and just failed, until that is stored.
        self._failed_batches: set[str] = set()
        self._background: set[asyncio.Task[int]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.throttle = Throttle(database, settings)

    def wake(self) -> None:
        self._wake.set()

    @property
    def held(self) -> list[str]:
        return list(self._held)

    @property
    def running(self) -> int:
        return len(self._running)

    def open(self) -> None:
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
            trace_configs=tracing.http_client_trace_configs(),
        )
        self._executor = Executor(
            self._session,
            self.upstream,
            self.settings.operation_timeout,
            self.settings.max_retries,
            self.settings.max_response_bytes,
            self.throttle,
        )

    async def run(self) -> None:
        while True:
            self._wake.clear()
            claimed = 0
            if self._scheduler.wants_more():
                claimed = await until_done("claim", self._claim)
            if claimed == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    def stop_starting(self) -> None:
        """Sends nothing more: claimed operations not yet started stay unstarted."""
        self._stopping = True

    async def drain(self, grace: float) -> None:
        """Starts nothing more; gives running operations `grace` seconds, cancels the rest."""
        self.stop_starting()
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=grace)
        unfinished = list(self._running.values())
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)

    async def close(self, seconds: float) -> list[str]:
        """Waits up to `seconds` for its own writes; the claims it never started, to
        give back. Writes the database does not take in time (it may be away) are
        abandoned: their claims' leases expire, and recovery ends them."""
        if self._background:
            _, late = await asyncio.wait(self._background, timeout=seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._gate.close()
        if self._session is not None:
            await self._session.close()
        return [job.claim.id for job in self._scheduler.take_unstarted()]

    def batch_canceled(self, batch_id: str) -> None:
        """Drops this process's unsent claims of a canceled batch."""
        self._cancel_unsent([batch_id])

    def recorded(self, results: Iterable[Result], recorded: Recorded) -> None:
        """Forgets claims whose results are stored: there may be room to claim."""
        for result in results:
            self._held.discard(result.claim.id)
            self._scheduler.recorded(result.batch_id)
        self._wake.set()
        # Their pending operations are canceled in the database now.
        self._failed_batches.difference_update(recorded.stopped_batches)
        for batch_id in recorded.finished_batches:
            self._authorizations.forget(batch_id)
        self._cancel_unsent(recorded.stopped_batches)

    async def _claim(self) -> int:
        async with self.database.read() as connection:
            candidates = await claims.batches_with_pending_work(connection, MAX_CANDIDATE_BATCHES)
        wanted = self._scheduler.to_claim(
            {
                batch.id: batch.in_flight_limit
                for batch in candidates
                if batch.id not in self._failed_batches
                and not self.throttle.holding_back(batch.tenant)
            }
        )
        if not wanted:
            return 0
        async with self.database.write() as connection:
            now = time.time()  # once the connection is held: a lease from before would be short
            claimed = await claims.claim(
                connection, self.owner, now, now + self.settings.lease_seconds, wanted
            )
        by_id = {batch.id: batch for batch in candidates}
        for claim in claimed:
            batch = by_id[claim.batch_id]
            authorization = self._authorizations.of(batch.id, batch.sealed_authorization)
            self._held.add(claim.id)
            job = Job(
                claim,
                authorization,
                batch.correlation_id,
                batch.stop_on_failure,
                batch.traceparent,
            )
            self._scheduler.add(batch.id, job)
        self._start_ready()
        return len(claimed)

    def _cancel_unsent(self, batch_ids: list[str]) -> None:
        unsent = [job.claim.id for job in self._scheduler.take_unstarted(batch_ids)]
        if unsent:
            cancel = functools.partial(self._cancel_claims, unsent)
            task = asyncio.create_task(
                until_done("cancel claims", cancel), name="engine-cancel-claims"
            )
            self._background.add(task)
            task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[int]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._on_task_died(task)

    async def _cancel_claims(self, operation_ids: list[str]) -> None:
        async with self.database.write() as connection:
            await claims.cancel_claims(connection, self.owner, operation_ids, time.time())
        self._held.difference_update(operation_ids)

    def _start_ready(self) -> None:
        if self._stopping:
            return
        for _, job in self._scheduler.startable():
            self._running[job.claim.id] = asyncio.create_task(self._run(job))

    async def _run(self, job: Job) -> None:
        claim = job.claim
        started = time.perf_counter()
        result: Result | None
        try:
            result = await self._send(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("operation %s could not be executed", claim.id)
            result = Result(
                claim, OperationStatus.FAILED, failure_reason="internal_error", attempts=1
            )
        finally:
            del self._running[claim.id]
            self._scheduler.finished(claim.batch_id)
            self._start_ready()
            self._wake.set()
        if result is None:
            # Ended unsent by a cancel or a stop, which recorded it: only forget it.
            self._held.discard(claim.id)
            self._scheduler.recorded(claim.batch_id)
            return
        _observe(job, result, time.perf_counter() - started)
        if job.stop_on_failure and result.is_failure:
            # Send nothing more of this batch while the failure is being stored.
            self._failed_batches.add(claim.batch_id)
            self._cancel_unsent([claim.batch_id])
        self.results.put_nowait(result)

    async def _send(self, job: Job) -> Result | None:
        """The operation's result; None when its claim ended before it could be sent.

        The throttle admits the first send before the gate marks it sent, so an
        operation held back by a rate limit can still be canceled, and one held
        back when the process dies goes back to pending."""
        claim = job.claim
        if job.authorization == "":
            # Sending without the caller's credentials could act as nobody, or
            # as someone else: refuse.
            return Result(claim, OperationStatus.FAILED, failure_reason="credentials_unavailable")
        admitted_at = await self.throttle.admit(claim.tenant)
        try:
            standing = await self._gate.admit(claim)
        except BaseException:
            self.throttle.finished(claim.tenant, admitted_at, None, None)
            raise
        if not standing:
            self.throttle.finished(claim.tenant, admitted_at, None, None)
            return None
        with tracing.operation_span(job.traceparent, claim.id, claim.batch_id):
            return await self._executor.execute(
                claim, job.authorization, job.correlation_id, admitted_at
            )


def _observe(job: Job, result: Result, seconds: float) -> None:
    metrics.operation_finished(result.status, seconds)
    if not log.isEnabledFor(logging.INFO):
        return  # thousands a second: skip building the event nobody logs
    log.info(
        "operation finished",
        extra={
            "request_id": job.correlation_id,
            "operation_id": job.claim.id,
            "batch_id": job.claim.batch_id,
            "status": str(result.status),
            "response_status": result.response_status,
            "failure_reason": result.failure_reason,
            "attempts": result.attempts,
            "duration_ms": round(seconds * 1000, 3),
        },
    )
