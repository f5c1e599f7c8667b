"""The operations table used as a work queue: claims, leases, results, recovery.

Every claim stamps the operation with an owner, a lease expiry and a new
generation; a result is written only while owner and generation still match,
so a worker whose lease was taken over (a zombie) changes nothing. The
batches' counts move with the results, in the same transaction
(batch_progress.py).
On PostgreSQL the claim skips rows other replicas hold (FOR UPDATE SKIP
LOCKED); SQLite ignores that clause, its writes being serialised anyway.

A batch's limit (its `in_flight_limit`: 1 when sequential) holds across the
fleet because everything that lets one of its operations be sent (a claim
that starts it at once, the send gate's mark) takes its turn at the batch (a
transaction's advisory lock on its id, on PostgreSQL), then counts the batch's
operations marked sent and still in progress, and marks no more than the room
left, all in one transaction: on PostgreSQL one call of a function that runs
these steps (migration 0011), one round trip, with the lock held only while
it runs. Under READ COMMITTED the count, a statement
after the lock, sees every mark committed by whoever held the lock before;
SKIP LOCKED alone bounds no count. The count is the
operations' own statuses rather than a counter kept on the batch: every way
out of `in_progress` (results, recovery, unclaim, cancel, stop) then frees its
slot without touching the batch row, so no path can let a counter drift, and
an expired lease of a dead replica keeps counting, still `in_progress`, until
recovery takes it back. The marking replica may leave out of the count its own
claims whose exchange with the upstream has ended but whose result is not
stored yet (`finished`): they run nowhere, and their slots refill without
waiting for the result write. Claims not marked are prefetched: a batch may
hold up to PREFETCH times its limit of claims, so slots refill from memory,
but a claimer gets no more of them than the room the batch has left and the
slots its own running operations will free: behind room that other replicas
hold they would only wait, and take turns at the send gate in vain. A
sequential batch gets none, its next operation is claimed only once the
previous one's result is stored, so operations run strictly in order.

A claim is marked sent (`sent_at`) just before it is sent, in the claim
itself when it starts at once, else in a statement conditional on the claim
still standing; a cancel or a stop after a failure ends only claims not
marked. The operation row's lock decides a race between the two: either the
mark wins and the operation is sent, or the cancel wins, the mark changes
nothing and the claim is dropped unsent.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    Boolean,
    Float,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    exists,
    func,
    null,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.dml import ReturningUpdate

from service.batch_progress import (
    add_finished,
    refresh_batches,
    stop_after_failures,
)
from service.bulk import BulkStatement, json_text
from service.database import DbConnection
from service.database_clock import database_now
from service.models import BatchStatus, OperationStatus
from service.store import batches, columns_of, operations

IDEMPOTENT_METHODS = ("GET", "PUT", "DELETE")
# A batch may hold this many times its running limit of claims, fleet-wide.
PREFETCH = 2


@dataclass(frozen=True)
class ActiveBatch:
    """An unfinished batch with pending operations: what its claims need of it."""

    id: str
    tenant: str
    sealed_authorization: bytes | None
    in_flight_limit: int
    correlation_id: str | None
    stop_on_failure: bool
    # The create call's trace context: its operations' spans are its children.
    traceparent: str | None


@dataclass(frozen=True)
class Claim:
    """A claimed operation: what sending it needs, and the generation that fences it."""

    id: str
    batch_id: str
    tenant: str
    lease_generation: int
    http_method: str
    path: str
    query_params: dict[str, Any] | None
    body: dict[str, Any] | None
    attempts: int
    # The Idempotency-Key to send when not the id (a retry's copy: lifecycle.py).
    idempotency_key: str | None
    # Set when the claim was marked sent as it was made: it starts at once.
    sent_at: float | None


@dataclass(frozen=True)
class Result:
    """How a claim ended: what the executor (or the engine, refusing to send) decided."""

    claim: Claim
    status: OperationStatus
    response_status: int | None = None
    response_body: Any = None
    failure_reason: str | None = None
    # Attempts made under this claim; the stored count adds those of earlier claims.
    attempts: int = 0

    @property
    def batch_id(self) -> str:
        return self.claim.batch_id

    @property
    def total_attempts(self) -> int:
        return self.claim.attempts + self.attempts

    @property
    def is_failure(self) -> bool:
        """What stops a batch that stops on failure."""
        if self.status in (OperationStatus.FAILED, OperationStatus.TIMED_OUT):
            return True
        return self.response_status is not None and self.response_status >= 400


def _batches_with_pending_work_query() -> Select[*tuple[Any, ...]]:
    """Unfinished batches that still have pending operations, oldest first."""
    has_pending = exists().where(
        operations.c.batch_id == batches.c.id, operations.c.status == OperationStatus.PENDING
    )
    return (
        select(*columns_of(batches, ActiveBatch))
        .where(
            batches.c.status.in_((BatchStatus.PENDING, BatchStatus.IN_PROGRESS)),
            has_pending,
            batches.c.tenant.not_in(bindparam("held_tenants", expanding=True)),
        )
        .order_by(batches.c.created_at, batches.c.id)
        .limit(bindparam("limit", type_=Integer))
    )


BATCHES_WITH_PENDING_WORK = _batches_with_pending_work_query()


async def batches_with_pending_work(
    connection: DbConnection, limit: int, held_tenants: Collection[str] = ()
) -> list[ActiveBatch]:
    """Up to `limit` of them, none of `held_tenants` (throttled: their batches
    would only fill the list)."""
    parameters = {"limit": limit, "held_tenants": sorted(held_tenants)}
    rows = await connection.execute(BATCHES_WITH_PENDING_WORK, parameters)
    return [ActiveBatch(**row) for row in rows.mappings()]


async def count_pending(connection: DbConnection) -> int:
    query = (
        select(func.count())
        .select_from(operations)
        .where(operations.c.status == OperationStatus.PENDING)
    )
    return int((await connection.execute(query)).scalar_one())


def _claim_statement(first_only: bool) -> ReturningUpdate[*tuple[Any, ...]]:
    """Marks a batch's next `count` pending operations as `owner`'s, returning them;
    the first `marked` of them are marked sent (`sent_at`), in the same statement.

    `first_only`: the batch's first pending operation or none, never a later one
    because the first is locked by someone else (SKIP LOCKED would skip it).
    """
    of_batch = operations.c.batch_id == bindparam("claim_batch")
    is_pending = operations.c.status == OperationStatus.PENDING
    in_order = []
    if first_only:
        first = select(func.min(operations.c.position)).where(of_batch, is_pending)
        in_order.append(operations.c.position == first.scalar_subquery())
    next_pending = (
        select(operations.c.id, operations.c.position)
        .where(of_batch, is_pending, *in_order)
        .order_by(operations.c.position)
        .limit(bindparam("count", type_=Integer))
        .with_for_update(skip_locked=True)
        # As a plain subquery PostgreSQL may rerun it for each row it joins,
        # LIMIT and all, and claim every pending operation; a CTE runs once.
        .cte("next_pending")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    ranked = select(
        next_pending.c.id,
        func.row_number().over(order_by=next_pending.c.position).label("rank"),
    ).cte("ranked")
    marked = ranked.c.rank <= bindparam("marked", type_=Integer)
    return (
        update(operations)
        .where(operations.c.id == ranked.c.id, operations.c.status == OperationStatus.PENDING)
        .values(
            status=OperationStatus.IN_PROGRESS,
            lease_owner=bindparam("owner"),
            lease_expires_at=bindparam("lease_until"),
            lease_generation=operations.c.lease_generation + 1,
            sent_at=case((marked, bindparam("now", type_=Float)), else_=null()),
            updated_at=bindparam("now"),
        )
        .returning(*columns_of(operations, Claim))
    )


# Built once: claims run many times a second, and building a statement costs
# more than running it. So are the other statements of claims and results.
CLAIM_NEXT = _claim_statement(first_only=False)
CLAIM_FIRST = _claim_statement(first_only=True)
# A claim's turn at a batch, and the batch's limit and status if it may still
# start operations: claims and send marks of one batch take turns, so that each
# counts what the one before it marked. SQLite's writers take turns anyway;
# PostgreSQL takes an advisory lock on the batch's id, inside the functions of
# migration 0011, which run these steps in one round trip.
_CLAIMABLE = select(batches.c.in_flight_limit, batches.c.status).where(
    batches.c.id == bindparam("claim_batch"),
    batches.c.status.in_((BatchStatus.PENDING, BatchStatus.IN_PROGRESS)),
    batches.c.canceled_at.is_(None),
)
_START_BATCH = (
    update(batches)
    .where(batches.c.id == bindparam("claim_batch"), batches.c.status == BatchStatus.PENDING)
    .values(status=BatchStatus.IN_PROGRESS, updated_at=bindparam("now"))
)


async def _take_turn(connection: DbConnection, batch_id: str) -> tuple[int, str] | None:
    row = (await connection.execute(_CLAIMABLE, {"claim_batch": batch_id})).first()
    return None if row is None else (row.in_flight_limit, row.status)


class Held(NamedTuple):
    """A batch's claims, fleet-wide: all of them, and those that run (marked sent and
    not among the claimer's `finished`), and of those the claimer's own."""

    claimed: int
    running: int
    own_running: int


_RUNS = and_(
    operations.c.sent_at.is_not(None),
    operations.c.id.not_in(bindparam("finished", expanding=True)),
)
_COUNT_HELD = select(
    func.count(),
    func.count().filter(_RUNS),
    func.count().filter(_RUNS, operations.c.lease_owner == bindparam("owner")),
).where(
    operations.c.batch_id == bindparam("claim_batch"),
    operations.c.status == OperationStatus.IN_PROGRESS,
)


async def _count_held_of(
    connection: DbConnection,
    batch_id: str,
    owner: str,
    finished: Mapping[str, Collection[str]] | None,
) -> Held:
    ended = list((finished or {}).get(batch_id, ()))
    parameters = {"claim_batch": batch_id, "owner": owner, "finished": ended}
    counts = (await connection.execute(_COUNT_HELD, parameters)).one()
    return Held(*(int(count) for count in counts))


def _all_finished(finished: Mapping[str, Collection[str]] | None) -> list[str]:
    return [claim_id for ids in (finished or {}).values() for claim_id in ids]


# PostgreSQL: the steps of `claim` and `mark_within_limits` below, in one call each.
_CLAIM_CALL = text(
    "SELECT * FROM batchd_claim(:batch_ids, :wanted, :to_start, :prefetch, :finished,"
    " :owner, :now, :lease_until)"
).columns(*columns_of(operations, Claim))
_MARK_CALL = text(
    "SELECT * FROM batchd_mark_sent(:batch_ids, :claim_ids, :generations, :finished, :owner, :now)"
).columns(operations.c.id, column("sent", Boolean))


async def claim(
    connection: DbConnection,
    owner: str,
    now: float,
    lease_until: float,
    wanted: Mapping[str, int],
    start: Mapping[str, int] | None = None,
    finished: Mapping[str, Collection[str]] | None = None,
) -> list[Claim]:
    """Claims up to `wanted[batch_id]` pending operations of each batch, in order,
    within the batch's room for claims; the first `start[batch_id]` of them are
    marked sent, within its fleet-wide running limit (`finished`: this owner's
    claims that run no more, by batch)."""
    if connection.dialect.name == "postgresql":
        return await _claim_in_one_call(
            connection, owner, now, lease_until, wanted, start, finished
        )
    claims: list[Claim] = []
    lease = {"owner": owner, "now": now, "lease_until": lease_until}
    # Batches taken in one order by every replica, so no two claims deadlock.
    for batch_id in sorted(wanted):
        of_batch = {"claim_batch": batch_id}
        turn = await _take_turn(connection, batch_id)
        if turn is None:
            continue
        limit, status = turn
        held = await _count_held_of(connection, batch_id, owner, finished)
        # Sequential: the next operation only once every earlier one is stored.
        room = limit - held.claimed if limit == 1 else PREFETCH * limit - held.claimed
        count = min(wanted[batch_id], room)
        marked = max(0, min((start or {}).get(batch_id, 0), count, limit - held.running))
        # Claims not marked wait for room: no more than the batch has left now, and
        # than the claimer's own running operations will free. Room that other
        # replicas hold would keep them waiting, and their turns at the gate in vain.
        count = min(count, held.own_running + max(0, limit - held.running))
        if count <= 0:
            continue
        if status == BatchStatus.PENDING:
            # Before its operations are locked: a cancel holds the batch's row while
            # it waits for theirs.
            await connection.execute(_START_BATCH, {**of_batch, "now": now})
        statement = CLAIM_FIRST if limit == 1 else CLAIM_NEXT
        parameters = {**of_batch, "count": count, "marked": marked, **lease}
        rows = await connection.execute(statement, parameters)
        # By position, in the fields' order: a mapping per row costs twice as much,
        # and this runs during the batch's turn.
        claimed = [Claim(*row) for row in rows]
        claims.extend(claimed)
    claims.sort(key=lambda claim: claim.id)
    return claims


async def _claim_in_one_call(
    connection: DbConnection,
    owner: str,
    now: float,
    lease_until: float,
    wanted: Mapping[str, int],
    start: Mapping[str, int] | None,
    finished: Mapping[str, Collection[str]] | None,
) -> list[Claim]:
    batch_ids = sorted(wanted)
    parameters = {
        "batch_ids": batch_ids,
        "wanted": [wanted[batch_id] for batch_id in batch_ids],
        "to_start": [(start or {}).get(batch_id, 0) for batch_id in batch_ids],
        "prefetch": PREFETCH,
        "finished": _all_finished(finished),
        "owner": owner,
        "now": now,
        "lease_until": lease_until,
    }
    rows = await connection.execute(_CLAIM_CALL, parameters)
    return sorted((Claim(*row) for row in rows), key=lambda claim: claim.id)


_record_result = BulkStatement(
    update(operations)
    .where(
        operations.c.id == bindparam("result_id"),
        operations.c.lease_generation == bindparam("generation"),
        operations.c.lease_owner == bindparam("owner"),
        operations.c.status == OperationStatus.IN_PROGRESS,
    )
    .values(
        status=bindparam("status"),
        response_status=bindparam("response_status"),
        response_body=bindparam("response_body"),
        failure_reason=bindparam("failure_reason"),
        attempts=bindparam("attempts"),
        lease_owner=None,
        lease_expires_at=None,
        updated_at=bindparam("now"),
    )
)


# PostgreSQL: the whole group in one statement, from arrays, returning the rows
# it changed. asyncpg's executemany tells no row counts, and without them every
# group recounted its batch: 5 to 18 ms a group in a 10,000-operation batch,
# growing with the batch. Owner and generation fence the claim on their own
# (every way out of in_progress clears the owner); a status condition too would
# let the planner start from the status index, through every dead entry of the
# batch's in-progress past, instead of from the primary key.
_given_results = (
    func.unnest(
        bindparam("ids", type_=ARRAY(String)),
        bindparam("generations", type_=ARRAY(Integer)),
        bindparam("statuses", type_=ARRAY(String)),
        bindparam("response_statuses", type_=ARRAY(Integer)),
        bindparam("response_bodies", type_=ARRAY(Text)),
        bindparam("failure_reasons", type_=ARRAY(String)),
        bindparam("attempt_counts", type_=ARRAY(Integer)),
    )
    .table_valued(
        "id",
        "generation",
        "status",
        "response_status",
        "response_body",
        "failure_reason",
        "attempts",
    )
    .render_derived(name="result")
)
_RECORD_RESULT_ARRAYS = (
    update(operations)
    .where(
        operations.c.id == _given_results.c.id,
        operations.c.lease_generation == _given_results.c.generation,
        operations.c.lease_owner == bindparam("owner"),
    )
    .values(
        status=_given_results.c.status,
        response_status=_given_results.c.response_status,
        response_body=cast(_given_results.c.response_body, JSONB),
        failure_reason=_given_results.c.failure_reason,
        attempts=_given_results.c.attempts,
        lease_owner=None,
        lease_expires_at=None,
        updated_at=bindparam("now"),
    )
    .returning(operations.c.id)
)


@dataclass(frozen=True)
class Recorded:
    finished_batches: list[str]
    # Batches that stop on failure and just had one: drop their unsent claims.
    stopped_batches: list[str]


async def record_results(
    connection: DbConnection, owner: str, now: float, results: Sequence[Result]
) -> Recorded:
    """Stores finished operations held by `owner`.

    In a batch that stops on failure, a failed, timed-out or >= 400 result
    cancels the operations not yet started. Only a result written counts: a
    zombie's failure (its claim was taken over, to be run again) stops nothing.
    """
    # Batches' rows first, then their operations', as cancels and stops lock
    # them. Raising the counts by what is about to be written takes those
    # locks, a round trip less than locking first, and is cheaper than a
    # recount, which grows with the batch.
    expected = Counter(result.batch_id for result in results)
    await add_finished(connection, now, expected)
    written = await _write_results(connection, owner, now, results)
    failures = [result for result in results if result.is_failure]
    failed = (
        {result.claim.id for result in failures} & written
        if written is not None
        else await _written_ids(connection, failures)
    )
    stopped = await stop_after_failures(
        connection, now, {result.batch_id for result in failures if result.claim.id in failed}
    )
    # Some claims were taken over: count from the statuses themselves. A stopped
    # batch also lost its pending operations: recount it.
    all_written = written is not None and len(written) == len(results)
    recount = set(stopped) if all_written else set(expected)
    return Recorded(await refresh_batches(connection, now, recount, expected), stopped)


async def _write_results(
    connection: DbConnection, owner: str, now: float, results: Sequence[Result]
) -> set[str] | None:
    """Writes the results whose claims still stand; the ids written, or None when
    some claim was taken over (SQLite counts rows, and tells not which)."""
    if connection.dialect.name == "postgresql":
        changed = await connection.execute(
            _RECORD_RESULT_ARRAYS,
            {
                "ids": [result.claim.id for result in results],
                "generations": [result.claim.lease_generation for result in results],
                "statuses": [result.status for result in results],
                "response_statuses": [result.response_status for result in results],
                "response_bodies": [json_text(result.response_body) for result in results],
                "failure_reasons": [result.failure_reason for result in results],
                "attempt_counts": [result.total_attempts for result in results],
                "owner": owner,
                "now": now,
            },
        )
        return set(changed.scalars())
    written = await _record_result.execute_many(
        connection,
        [
            {
                "result_id": result.claim.id,
                "generation": result.claim.lease_generation,
                "owner": owner,
                "status": result.status,
                "response_status": result.response_status,
                "response_body": json_text(result.response_body),
                "failure_reason": result.failure_reason,
                "attempts": result.total_attempts,
                "now": now,
            }
            for result in results
        ],
    )
    # SQLite's driver counts the rows of an executemany.
    if written.rowcount != len(results):
        return None
    return {result.claim.id for result in results}


_WRITTEN = select(operations.c.id).where(
    tuple_(operations.c.id, operations.c.lease_generation).in_(bindparam("claims", expanding=True)),
    operations.c.lease_owner.is_(None),
    operations.c.status.not_in((OperationStatus.PENDING, OperationStatus.IN_PROGRESS)),
)


async def _written_ids(connection: DbConnection, results: Sequence[Result]) -> set[str]:
    """Which of these results stand written: their claim's generation ended, not
    taken over (a new claim has a new generation)."""
    if not results:
        return set()
    claimed = [(result.claim.id, result.claim.lease_generation) for result in results]
    return set((await connection.execute(_WRITTEN, {"claims": claimed})).scalars())


_MARK_SENT = (
    update(operations)
    .where(
        # The ids lead the planner to the primary key; the pairs fence each claim.
        operations.c.id.in_(bindparam("ids", expanding=True)),
        tuple_(operations.c.id, operations.c.lease_generation).in_(
            bindparam("claims", expanding=True)
        ),
        operations.c.lease_owner == bindparam("owner"),
        operations.c.status == OperationStatus.IN_PROGRESS,
    )
    .values(sent_at=bindparam("now"))
    .returning(operations.c.id)
)


async def mark_sent(
    connection: DbConnection, owner: str, now: float, to_send: Sequence[Claim]
) -> set[str]:
    """Marks these claims as about to be sent; those still standing, by id.

    A claim that a cancel, a stop or a recovery ended first is not marked and
    must not be sent.
    """
    if not to_send:
        return set()
    pairs = [(claim.id, claim.lease_generation) for claim in to_send]
    parameters = {"ids": [claim.id for claim in to_send], "claims": pairs}
    marked = await connection.execute(_MARK_SENT, {**parameters, "owner": owner, "now": now})
    return set(marked.scalars())


@dataclass(frozen=True)
class Marks:
    sent: set[str]
    # Still standing, but their batch runs its limit already: send them later.
    no_room: set[str]


async def mark_within_limits(
    connection: DbConnection,
    owner: str,
    now: float,
    to_send: Sequence[Claim],
    finished: Mapping[str, Collection[str]],
) -> Marks:
    """Marks these claims sent as far as each batch's fleet-wide limit allows,
    earliest first (`finished`: this owner's claims that run no more, by batch).
    Those neither sent nor out of room were ended (cancel, stop, recovery)."""
    if connection.dialect.name == "postgresql":
        return await _mark_in_one_call(connection, owner, now, to_send, finished)
    by_batch: defaultdict[str, list[Claim]] = defaultdict(list)
    for claim in to_send:
        by_batch[claim.batch_id].append(claim)
    chosen: list[Claim] = []
    no_room: set[str] = set()
    # Batches in the order claims take their turns, then their operations.
    for batch_id in sorted(by_batch):
        turn = await _take_turn(connection, batch_id)
        if turn is None:
            continue  # canceled or over: its claims were ended with it
        limit, _ = turn
        running = (await _count_held_of(connection, batch_id, owner, finished)).running
        waiting = sorted(by_batch[batch_id], key=lambda claim: claim.id)
        room = max(0, limit - running)
        chosen.extend(waiting[:room])
        no_room.update(claim.id for claim in waiting[room:])
    return Marks(await mark_sent(connection, owner, now, chosen), no_room)


async def _mark_in_one_call(
    connection: DbConnection,
    owner: str,
    now: float,
    to_send: Sequence[Claim],
    finished: Mapping[str, Collection[str]],
) -> Marks:
    parameters = {
        "batch_ids": [claim.batch_id for claim in to_send],
        "claim_ids": [claim.id for claim in to_send],
        "generations": [claim.lease_generation for claim in to_send],
        "finished": _all_finished(finished),
        "owner": owner,
        "now": now,
    }
    marks = Marks(set(), set())
    for claim_id, sent in await connection.execute(_MARK_CALL, parameters):
        (marks.sent if sent else marks.no_room).add(claim_id)
    return marks


def _held_by(owner: str, operation_ids: Sequence[str]) -> list[ColumnElement[bool]]:
    """These operations, as long as `owner`'s claim on them still stands."""
    return [
        operations.c.id.in_(operation_ids),
        operations.c.lease_owner == owner,
        operations.c.status == OperationStatus.IN_PROGRESS,
    ]


async def renew_leases(
    connection: DbConnection, owner: str, operation_ids: Sequence[str], lease_seconds: float
) -> None:
    """Extends `owner`'s leases from the database's own clock, when the statement
    runs: an expiry taken before waiting for a stalled database is already past."""
    if not operation_ids:
        return
    await connection.execute(
        update(operations)
        .where(*_held_by(owner, operation_ids))
        .values(lease_expires_at=database_now() + lease_seconds)
    )


async def unclaim(
    connection: DbConnection, owner: str, operation_ids: Sequence[str], now: float
) -> None:
    """Returns claimed operations that were never sent to pending, whatever their method."""
    await _end_unsent(connection, owner, operation_ids, now, OperationStatus.PENDING)


async def cancel_claims(
    connection: DbConnection, owner: str, operation_ids: Sequence[str], now: float
) -> None:
    """Cancels claimed operations that were never sent (their batch was canceled or stopped)."""
    canceled = await _end_unsent(connection, owner, operation_ids, now, OperationStatus.CANCELED)
    await refresh_batches(connection, now, canceled)


async def _end_unsent(
    connection: DbConnection,
    owner: str,
    operation_ids: Sequence[str],
    now: float,
    status: OperationStatus,
) -> set[str]:
    """Ends `owner`'s claims of operations it never sent; their batches."""
    if not operation_ids:
        return set()
    ended = await connection.execute(
        update(operations)
        .where(*_held_by(owner, operation_ids))
        .values(status=status, lease_owner=None, lease_expires_at=None, updated_at=now)
        .returning(operations.c.batch_id)
    )
    return set(ended.scalars())


async def requeue(
    connection: DbConnection,
    now: float,
    resend_interrupted: bool,
    *,
    expired_before: float | None = None,
    owner: str | None = None,
    not_owner: str | None = None,
) -> int:
    """Takes back in-progress operations whose lease expired (or that `owner` holds),
    never those `not_owner` holds: a process that still holds a claim may have
    its result in hand, however late its renewal came.

    An idempotent operation goes back to pending, and so does a POST or PATCH
    that was claimed but never sent. One that was sent may have reached the
    upstream, so it fails as `interrupted`, unless re-sending (with the same
    Idempotency-Key) is allowed.
    """
    held = [operations.c.status == OperationStatus.IN_PROGRESS]
    if expired_before is not None:
        held.append(operations.c.lease_expires_at < expired_before)
    if owner is not None:
        held.append(operations.c.lease_owner == owner)
    if not_owner is not None:
        held.append(operations.c.lease_owner.is_distinct_from(not_owner))
    released = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
    # A canceled batch claims nothing more, so nothing of it may go back to pending:
    # what was never sent is canceled, what was sent is interrupted.
    of_canceled = operations.c.batch_id.in_(
        select(batches.c.id).where(batches.c.canceled_at.is_not(None))
    )
    canceled = await connection.execute(
        update(operations)
        .where(*held, of_canceled, operations.c.sent_at.is_(None))
        .values(status=OperationStatus.CANCELED, **released)
        .returning(operations.c.batch_id)
    )
    requeued = await connection.execute(
        update(operations)
        .where(*held, ~of_canceled, _resendable(resend_interrupted))
        .values(status=OperationStatus.PENDING, **released)
        .returning(operations.c.batch_id)
    )
    failed = await connection.execute(
        update(operations)
        .where(*held)
        .values(status=OperationStatus.FAILED, failure_reason="interrupted", **released)
        .returning(operations.c.batch_id)
    )
    ended = [*canceled.scalars(), *failed.scalars()]
    await refresh_batches(connection, now, set(ended))
    return len(requeued.all()) + len(ended)


def _resendable(resend_interrupted: bool) -> ColumnElement[bool]:
    if resend_interrupted:
        return true()
    # Every claim clears sent_at, so it speaks of the current claim only.
    never_sent = operations.c.sent_at.is_(None)
    return or_(operations.c.http_method.in_(IDEMPOTENT_METHODS), never_sent)
