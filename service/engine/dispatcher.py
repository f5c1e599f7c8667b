"""The dispatcher: claims pending operations whenever slots are free, and runs them.

Claims are dealt fairly across batches by the scheduler. An operation takes a
slot only once its tenant's throttle lets it in, so a tenant the upstream
throttles waits without holding slots other tenants could use, and its batches
are left out of the claims meanwhile. Claims that can start at once are marked
sent in the claim itself; the others are prefetched, and pass the send gate
(which a cancel may have beaten, or which may find their batch at its
fleet-wide limit: they then wait for another turn). Each running operation is a
task of its own, and its result goes to the result writer's queue. A claim
stays held (its lease renewed) until its result is recorded. New work wakes
the dispatcher at once; a poll covers the rest.
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
from service.engine.send_gate import SendGate, Verdict
from service.engine.throttle import Throttle
from service.engine.urls import Upstream
from service.models import OperationStatus
from service.settings import ServiceSettings
from service.waiting import POLL_SECONDS

log = logging.getLogger(__name__)
MAX_CANDIDATE_BATCHES = 256
# A batch the gate found at its fleet-wide limit, or a tenant the throttle
# holds back: when to look again (other replicas' results, pauses, end unheard).
NO_ROOM_RETRY_SECONDS = 0.05
HELD_BACK_RETRY_SECONDS = 0.05


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
        # By batch: claims of this process that run no more, until recorded.
        # They leave the batch's running count (claims.py): their slots refill at once.
        self._finished: dict[str, set[str]] = {}
        self._gate = SendGate(database, owner, lambda: self._finished)
        self._tenant_of: dict[str, str] = {}
        self._candidate_tenants: set[str] = set()
        # Batches the gate found at their limit, until the next look.
        self._no_room: set[str] = set()
        self._look_again: asyncio.TimerHandle | None = None
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
            if self._scheduler.wants_more(self._held_back_batches()):
                claimed = await until_done("claim", self._claim)
            if claimed == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    def stop_starting(self) -> None:
        """Sends nothing more: claimed operations not yet started stay unstarted."""
        self._stopping = True
        if self._look_again is not None:
            self._look_again.cancel()
            self._look_again = None

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
        self.stop_starting()
        await self._gate.close()
        if self._session is not None:
            await self._session.close()
        return [job.claim.id for job in self._scheduler.take_unstarted()]

    def batch_canceled(self, batch_id: str) -> None:
        """Drops this process's unsent claims of a canceled batch, and the caller's
        credentials: operations already sent hold their own copy."""
        self._cancel_unsent([batch_id])
        self._authorizations.forget(batch_id)

    def holds_credentials(self, batch_id: str) -> bool:
        """Whether this process keeps the batch's caller's Authorization unsealed."""
        return batch_id in self._authorizations

    def recorded(self, results: Iterable[Result], recorded: Recorded) -> None:
        """Forgets claims whose results are stored: there may be room to claim."""
        for result in results:
            self._forget(result.claim)
        self._wake.set()
        # Their pending operations are canceled in the database now.
        self._failed_batches.difference_update(recorded.stopped_batches)
        for batch_id in recorded.finished_batches:
            self._authorizations.forget(batch_id)
            self._tenant_of.pop(batch_id, None)
        self._cancel_unsent(recorded.stopped_batches)

    def _forget(self, claim: Claim) -> None:
        """The claim is over in the database: it holds nothing more here."""
        self._held.discard(claim.id)
        self._scheduler.recorded(claim.batch_id)
        finished = self._finished.get(claim.batch_id)
        if finished is not None:
            finished.discard(claim.id)
            if not finished:
                del self._finished[claim.batch_id]

    async def _claim(self) -> int:
        known = self._candidate_tenants | set(self._tenant_of.values())
        held_tenants = {tenant for tenant in known if self.throttle.holding_back(tenant)}
        async with self.database.read() as connection:
            candidates = await claims.batches_with_pending_work(
                connection, MAX_CANDIDATE_BATCHES, held_tenants
            )
        self._candidate_tenants = {batch.tenant for batch in candidates}
        self._forget_batches_gone({batch.id for batch in candidates})
        wanted = self._scheduler.to_claim(
            {
                batch.id: batch.in_flight_limit
                for batch in candidates
                if batch.id not in self._failed_batches and batch.tenant not in held_tenants
            },
            self._held_back_batches(),
        )
        if not wanted:
            return 0
        by_id = {batch.id: batch for batch in candidates}
        entered = self._enter_at_once(wanted, by_id)
        try:
            async with self.database.write_statement() as connection:
                now = time.time()  # once the connection is held: a lease from before would be short
                claimed = await claims.claim(
                    connection,
                    self.owner,
                    now,
                    now + self.settings.lease_seconds,
                    wanted,
                    entered,
                    self._finished,
                )
        except BaseException:
            self._leave(entered, by_id)
            raise
        for claim in claimed:
            batch = by_id[claim.batch_id]
            authorization = self._authorizations.of(batch.id, batch.sealed_authorization)
            self._held.add(claim.id)
            self._tenant_of[batch.id] = batch.tenant
            job = Job(
                claim,
                authorization,
                batch.correlation_id,
                batch.stop_on_failure,
                batch.traceparent,
            )
            if claim.sent_at is None:
                self._scheduler.add(batch.id, job)
                continue
            entered[batch.id] -= 1
            self._scheduler.add_started(batch.id, job)
            self._running[claim.id] = asyncio.create_task(self._run(job, marked=True))
        self._leave(entered, by_id)
        self._start_ready()
        return len(claimed)

    def _forget_batches_gone(self, with_pending_work: set[str]) -> None:
        """Batches with nothing pending and no claim held here: another replica may
        have finished them, which nothing tells this one. Their callers' credentials
        go; a batch merely left out of the candidates is unsealed again if claimed."""
        gone = [
            batch_id
            for batch_id in self._tenant_of
            if batch_id not in with_pending_work and not self._scheduler.holds(batch_id)
        ]
        for batch_id in gone:
            self._authorizations.forget(batch_id)
            del self._tenant_of[batch_id]

    def _enter_at_once(
        self, wanted: dict[str, int], by_id: dict[str, claims.ActiveBatch]
    ) -> dict[str, int]:
        """Throttle places for the claims that can start as they arrive, by batch:
        those the claim may mark sent. Never for a tenant that waits for rate-limit
        tokens: an operation marked sent while it waits could not be canceled."""
        if self._stopping:
            return {}
        entered: dict[str, int] = {}
        for batch_id, count in self._scheduler.to_start_at_once(wanted).items():
            tenant = by_id[batch_id].tenant
            if self.throttle.takes_tokens(tenant):
                continue
            places = 0
            while places < count and self.throttle.try_enter(tenant):
                places += 1
            if places:
                entered[batch_id] = places
        return entered

    def _leave(self, entered: dict[str, int], by_id: dict[str, claims.ActiveBatch]) -> None:
        """Gives back throttle places the claim did not use."""
        for batch_id, places in entered.items():
            for _ in range(places):
                self.throttle.finished(by_id[batch_id].tenant, time.monotonic(), None, None)

    def _held_back_batches(self) -> set[str]:
        return {
            batch_id
            for batch_id, tenant in self._tenant_of.items()
            if self.throttle.holding_back(tenant)
        }

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
        for _, job in self._scheduler.startable(self._may_start):
            self._running[job.claim.id] = asyncio.create_task(self._run(job, marked=False))

    def _may_start(self, batch_id: str, job: Job) -> bool:
        """Whether the batch's next claim may take a slot now: then its throttle
        place is taken."""
        if batch_id in self._no_room:
            return False
        if self.throttle.try_enter(job.claim.tenant):
            return True
        turn = self.throttle.next_turn_in(job.claim.tenant)
        self._look_again_in(min(turn, HELD_BACK_RETRY_SECONDS) or HELD_BACK_RETRY_SECONDS)
        return False

    def _look_again_in(self, seconds: float) -> None:
        """Starts what is ready again in `seconds`, or sooner if already planned sooner."""
        if self._stopping:
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + seconds
        if self._look_again is not None:
            if self._look_again.when() <= when:
                return
            self._look_again.cancel()
        self._look_again = loop.call_at(when, self._looking_again)

    def _looking_again(self) -> None:
        self._look_again = None
        self._no_room.clear()
        self._start_ready()

    async def _run(self, job: Job, marked: bool) -> None:
        """Runs a claim that holds a slot and a throttle place (`marked`: sent already)."""
        claim = job.claim
        started = time.perf_counter()
        outcome: Result | Verdict = Verdict.ENDED
        try:
            outcome = await self._send(job, marked)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("operation %s could not be executed", claim.id)
            outcome = Result(
                claim, OperationStatus.FAILED, failure_reason="internal_error", attempts=1
            )
        finally:
            del self._running[claim.id]
            if outcome is Verdict.NO_ROOM:
                self._scheduler.not_started(claim.batch_id, job)
                self._no_room.add(claim.batch_id)
                self._look_again_in(NO_ROOM_RETRY_SECONDS)
            else:
                self._scheduler.finished(claim.batch_id)
                self._finished.setdefault(claim.batch_id, set()).add(claim.id)
            self._start_ready()
            self._wake.set()
        if not isinstance(outcome, Result):
            if outcome is Verdict.ENDED:
                # Ended unsent by a cancel or a stop, which recorded it: only forget it.
                self._forget(claim)
            return
        result = outcome
        _observe(job, result, time.perf_counter() - started)
        if job.stop_on_failure and result.is_failure:
            # Send nothing more of this batch while the failure is being stored.
            self._failed_batches.add(claim.batch_id)
            self._cancel_unsent([claim.batch_id])
        self.results.put_nowait(result)

    async def _send(self, job: Job, marked: bool) -> Result | Verdict:
        """The operation's result, or why it was not sent (now, or ever).

        The throttle admits the first send before the gate marks it sent, so an
        operation held back by a rate limit can still be canceled, and one held
        back when the process dies goes back to pending."""
        claim = job.claim
        admitted_at = await self.throttle.admit_entered(claim.tenant)
        verdict = Verdict.SEND
        try:
            if job.authorization != "" and not marked:
                verdict = await self._gate.admit(claim)
        except BaseException:
            self.throttle.finished(claim.tenant, admitted_at, None, None)
            raise
        if job.authorization == "" or verdict is not Verdict.SEND:
            self.throttle.finished(claim.tenant, admitted_at, None, None)
            if job.authorization == "":
                # Sending without the caller's credentials could act as nobody, or
                # as someone else: refuse.
                return Result(
                    claim, OperationStatus.FAILED, failure_reason="credentials_unavailable"
                )
            return verdict
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
