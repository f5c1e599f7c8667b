"""Every query of the store and the work queue, run on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, update

from service import claims, store
from service.database import Database, open_database
from service.migrate import upgrade
from service.models import BatchStatus, OperationStatus
from service.store import operations as operations_table

TENANT = "tenant-a"
# Sub-second digits must survive: ordering relies on them.
CREATED = 1_700_000_000.123456
SEALED = b"\x00sealed\xff"


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    opened = open_database(database_url)
    await upgrade(opened)
    yield opened
    await opened.dispose()


def new_batch(
    batch_id: str, created: float, methods: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    batch: dict[str, Any] = {
        "id": batch_id,
        "tenant": TENANT,
        "status": BatchStatus.PENDING,
        "operations_count": len(methods),
        "finished_count": 0,
        "sealed_authorization": SEALED,
        "in_flight_limit": 16,
        "created_at": created,
        "updated_at": created,
    }
    operations: list[dict[str, Any]] = [
        {
            "id": f"{batch_id}-op{position}",
            "batch_id": batch_id,
            "tenant": TENANT,
            "position": position,
            "http_method": method,
            "path": f"/things/{position}",
            "query_params": {"ids": ["b", "a"], "f": {"x": True}} if position == 0 else None,
            "body": {"name": "é", "n": 1.5, "nested": [1, None]} if method == "POST" else None,
            "status": OperationStatus.PENDING,
            "response_status": None,
            "response_body": None,
            "failure_reason": None,
            "attempts": 0,
            "lease_owner": None,
            "lease_expires_at": None,
            "lease_generation": 0,
            "sent_at": None,
            "idempotency_key": None,
            "created_at": created,
            "updated_at": created,
        }
        for position, method in enumerate(methods)
    ]
    return batch, operations


async def insert(database: Database, batch_id: str, created: float, methods: list[str]) -> None:
    batch, operations = new_batch(batch_id, created, methods)
    async with database.write() as connection:
        await store.insert_batch(connection, batch, operations)


def page(limit: int = 20, number: int = 1, **ordering: Any) -> store.PageRequest:
    return store.PageRequest(limit, number, store.Ordering(**ordering))


async def test_store_reads_back_what_it_wrote(database: Database) -> None:
    await insert(database, "b1", CREATED, ["GET", "POST"])
    async with database.read() as connection:
        batch = await store.get_batch(connection, TENANT, "b1")
        assert await store.get_batch(connection, "tenant-b", "b1") is None
        first = (
            await connection.execute(store.OPERATION_BY_ID, {"id": "b1-op0", "tenant": TENANT})
        ).first()
        assert (
            await database.fetch_one(store.OPERATION_BY_ID, {"id": "b1-op0", "tenant": "tenant-b"})
            is None
        )
        in_order = await store.operations_page(connection, TENANT, "b1", -1, 100)
    assert batch is not None and first is not None
    assert (batch.created_at, batch.sealed_authorization, batch.status) == (
        CREATED,
        SEALED,
        "pending",
    )
    assert first.query_params == {"ids": ["b", "a"], "f": {"x": True}}
    assert first.body is None and first.response_body is None
    assert [op.position for op in in_order] == [0, 1]
    assert in_order[1].body == {"name": "é", "n": 1.5, "nested": [1, None]}


async def test_store_lists_filter_order_and_page(database: Database) -> None:
    for number in range(5):
        await insert(database, f"b{number}", CREATED + number / 1000, ["GET"])
    async with database.read() as connection:
        newest, total = await store.list_batches(connection, TENANT, [], [], page(limit=2))
        oldest, _ = await store.list_batches(
            connection, TENANT, [], [], page(limit=2, number=2, descending=False)
        )
        beyond, beyond_total = await store.list_batches(connection, TENANT, [], [], page(10, 2))
        chosen, chosen_total = await store.list_batches(
            connection, TENANT, ["b1", "b3", "nope"], ["pending"], page()
        )
        none, none_total = await store.list_batches(connection, TENANT, [], ["completed"], page())
        operations, operations_total = await store.list_operations(
            connection, TENANT, ["b2", "b4"], ["pending"], page(column="updated_at")
        )
    assert total == 5 and [row.id for row in newest] == ["b4", "b3"]
    assert [row.id for row in oldest] == ["b2", "b3"]
    assert (beyond, beyond_total) == ([], 5)
    assert chosen_total == 2 and {row.id for row in chosen} == {"b1", "b3"}
    assert (none, none_total) == ([], 0)
    assert operations_total == 2 and [row.id for row in operations] == ["b4-op0", "b2-op0"]


async def claim(database: Database, owner: str, wanted: dict[str, int]) -> list[claims.Claim]:
    async with database.write() as connection:
        return await claims.claim(connection, owner, CREATED + 1, CREATED + 31, wanted)


def result(claimed: claims.Claim, status: OperationStatus, body: Any) -> claims.Result:
    return claims.Result(claimed, status, 200, body, None, attempts=1)


async def test_queue_claims_records_and_completes_a_batch(database: Database) -> None:
    await insert(database, "b1", CREATED, ["GET", "POST", "GET"])
    async with database.read() as connection:
        [active] = await claims.batches_with_pending_work(connection, 10)
    assert (active.id, active.sealed_authorization) == ("b1", SEALED)

    first, second = await claim(database, "me", {"b1": 2})
    assert [first.id, second.id] == ["b1-op0", "b1-op1"]
    assert (first.lease_generation, first.http_method, first.attempts) == (1, "GET", 0)
    assert first.query_params == {"ids": ["b", "a"], "f": {"x": True}}
    assert second.body == {"name": "é", "n": 1.5, "nested": [1, None]}
    async with database.write() as connection:
        await claims.renew_leases(connection, "me", [first.id, second.id], CREATED + 60)
        completed = await claims.record_results(
            connection,
            "me",
            CREATED + 2,
            [
                result(first, OperationStatus.COMPLETED, [{"id": 1}, None]),
                # A zombie's write: its generation was taken over, so it changes nothing.
                claims.Result(
                    dataclasses.replace(second, lease_generation=0),
                    OperationStatus.FAILED,
                    failure_reason="x",
                    attempts=1,
                ),
            ],
        )
    assert completed.finished_batches == []
    [third] = await claim(database, "me", {"b1": 5})
    async with database.write() as connection:
        completed = await claims.record_results(
            connection,
            "me",
            CREATED + 3,
            [
                result(second, OperationStatus.COMPLETED, None),
                result(third, OperationStatus.COMPLETED, "ok"),
            ],
        )
        batch = await store.get_batch(connection, TENANT, "b1")
        operations = await store.operations_page(connection, TENANT, "b1", -1, 100)
        pending = await claims.batches_with_pending_work(connection, 10)
    assert completed.finished_batches == ["b1"] and pending == []
    assert batch is not None
    assert (batch.status, batch.finished_count, batch.sealed_authorization) == (
        "completed",
        3,
        None,
    )
    assert [op.response_body for op in operations] == [[{"id": 1}, None], None, "ok"]
    assert operations[0].lease_expires_at is None and operations[0].lease_generation == 1


async def test_recovery_requeues_unsent_posts_and_spares_its_own_claims(
    database: Database,
) -> None:
    await insert(database, "b1", CREATED, ["POST", "POST", "POST"])
    sent, unsent, own = await claim(database, "gone", {"b1": 3})
    async with database.write() as connection:
        # A mark under an earlier claim of the same operation does not count.
        stale = dataclasses.replace(unsent, lease_generation=unsent.lease_generation + 1)
        assert await claims.mark_sent(connection, "gone", CREATED, [sent, stale]) == {sent.id}
        await connection.execute(
            update(operations_table).where(operations_table.c.id == own.id).values(lease_owner="me")
        )
        recovered = await claims.requeue(
            connection, CREATED + 40, False, expired_before=CREATED + 40, not_owner="me"
        )
        rows = await store.operations_page(connection, TENANT, "b1", -1, 100)
    assert recovered == 2
    assert [(op.status, op.failure_reason) for op in rows] == [
        ("failed", "interrupted"),
        ("pending", None),
        ("in_progress", None),
    ]


async def test_leases_are_renewed_from_the_database_clock(database: Database) -> None:
    await insert(database, "b1", CREATED, ["GET"])
    [claimed] = await claim(database, "me", {"b1": 1})
    before = time.time()
    async with database.write() as connection:
        await claims.renew_leases(connection, "me", [claimed.id], 30)
        expiry = (
            await connection.execute(
                select(operations_table.c.lease_expires_at).where(
                    operations_table.c.id == claimed.id
                )
            )
        ).scalar_one()
    assert before + 29 < expiry < time.time() + 31


async def test_recovery_in_a_canceled_batch_requeues_nothing(database: Database) -> None:
    """A canceled batch claims nothing more: a recovered claim of it must end, or the
    batch would keep a pending operation, unfinished, forever."""
    await insert(database, "b1", CREATED, ["GET", "GET", "POST"])
    sent_get, _unsent_get, sent_post = await claim(database, "gone", {"b1": 3})
    async with database.write() as connection:
        await claims.mark_sent(connection, "gone", CREATED, [sent_get, sent_post])
        await connection.execute(
            update(store.batches).where(store.batches.c.id == "b1").values(canceled_at=CREATED)
        )
        recovered = await claims.requeue(
            connection, CREATED + 40, False, expired_before=CREATED + 40
        )
        operations = await store.operations_page(connection, TENANT, "b1", -1, 100)
        [batch] = await connection.execute(
            select(store.batches.c.status).where(store.batches.c.id == "b1")
        )
    assert recovered == 3
    assert [(op.status, op.failure_reason) for op in operations] == [
        ("failed", "interrupted"),
        ("canceled", None),
        ("failed", "interrupted"),
    ]
    assert batch.status == BatchStatus.CANCELED


async def test_queue_requeues_expired_leases(database: Database) -> None:
    await insert(database, "b1", CREATED, ["GET", "POST"])
    _, post = await claim(database, "gone", {"b1": 2})
    async with database.write() as connection:
        assert await claims.mark_sent(connection, "gone", CREATED, [post]) == {post.id}
        assert await claims.requeue(connection, CREATED + 5, False, expired_before=CREATED) == 0
        recovered = await claims.requeue(
            connection, CREATED + 40, False, expired_before=CREATED + 40
        )
        operations = await store.operations_page(connection, TENANT, "b1", -1, 100)
    assert recovered == 2
    assert [(op.status, op.failure_reason) for op in operations] == [
        ("pending", None),
        ("failed", "interrupted"),
    ]
    [again] = await claim(database, "me", {"b1": 2})
    assert (again.id, again.lease_generation) == ("b1-op0", 2)
    # The first owner comes back: neither its generation nor its name holds the claim now.
    zombie_writes = [
        claims.Result(
            dataclasses.replace(again, lease_generation=generation),
            OperationStatus.COMPLETED,
            200,
            "late",
            attempts=1,
        )
        for generation in (1, 2)
    ]
    async with database.write() as connection:
        for zombie_write in zombie_writes:
            recorded = await claims.record_results(connection, "gone", CREATED + 41, [zombie_write])
            assert recorded.finished_batches == []
        batch = await store.get_batch(connection, TENANT, "b1")
    assert batch is not None and (batch.status, batch.finished_count) == ("in_progress", 1)
    async with database.write() as connection:
        recorded = await claims.record_results(
            connection, "me", CREATED + 42, [result(again, OperationStatus.COMPLETED, "on time")]
        )
        batch = await store.get_batch(connection, TENANT, "b1")
        operations = await store.operations_page(connection, TENANT, "b1", -1, 100)
    assert recorded.finished_batches == ["b1"]
    assert batch is not None and (batch.status, batch.finished_count) == ("completed", 2)
    assert operations[0].response_body == "on time"


async def test_a_zombies_failure_stops_no_batch_and_the_written_failure_does(
    database: Database,
) -> None:
    """A batch that stops on failure: the late 500 of a claim taken over was not written,
    so it must not cancel the batch's other operations; the rerun's own 500 does."""
    batch, operations = new_batch("b1", CREATED, ["GET", "GET", "GET"])
    async with database.write() as connection:
        await store.insert_batch(connection, {**batch, "stop_on_failure": True}, operations)
    [taken_over] = await claim(database, "gone", {"b1": 1})
    async with database.write() as connection:
        await claims.requeue(connection, CREATED + 40, False, expired_before=CREATED + 40)
    [again] = await claim(database, "me", {"b1": 1})
    assert (again.id, again.lease_generation) == (taken_over.id, taken_over.lease_generation + 1)

    def failure(claimed: claims.Claim) -> claims.Result:
        return claims.Result(claimed, OperationStatus.COMPLETED, 500, "oops", None, attempts=1)

    async def record(owner: str, claimed: claims.Claim) -> tuple[list[str], list[str]]:
        async with database.write() as connection:
            recorded = await claims.record_results(
                connection, owner, CREATED + 41, [failure(claimed)]
            )
            rows = await store.operations_page(connection, TENANT, "b1", -1, 100)
        return recorded.stopped_batches, [row.status for row in rows]

    assert await record("gone", taken_over) == ([], ["in_progress", "pending", "pending"])
    assert await record("me", again) == (["b1"], ["completed", "canceled", "canceled"])


@pytest.fixture
async def postgres_database(postgres_url: str) -> AsyncIterator[Database]:
    """For what only PostgreSQL does: SQLite serialises writers, there is nothing to skip."""
    opened = open_database(postgres_url)
    yield opened
    await opened.dispose()


async def test_claims_of_one_batch_take_turns_and_count_each_others(
    postgres_database: Database,
) -> None:
    database = postgres_database
    await insert(database, "b1", CREATED, ["GET"] * 40)  # its limit: 16 at once, 32 claimed
    await insert(database, "b2", CREATED, ["GET"] * 5)
    async with database.write() as holding:
        # Nothing runs yet: no more claims than the 16 the batch could run now.
        held = await claims.claim(holding, "one", CREATED, CREATED + 30, {"b1": 20})
        # A claim of another batch does not wait for this transaction.
        elsewhere = await asyncio.wait_for(claim(database, "two", {"b2": 2}), 30)
        # One of the same batch waits for the batch's turn, to count these claims.
        same_batch = asyncio.create_task(claim(database, "two", {"b1": 20}))
        await asyncio.sleep(0.5)
        assert not same_batch.done()
    later = await asyncio.wait_for(same_batch, 30)
    assert sorted(c.id for c in held) == sorted(f"b1-op{n}" for n in range(16))
    assert [c.id for c in elsewhere] == ["b2-op0", "b2-op1"]
    # Twice the limit claimed in all, none of them marked: the room to claim is full.
    assert sorted(c.id for c in later) == sorted(f"b1-op{n}" for n in range(16, 32))


async def test_marks_sent_keep_a_batch_within_its_limit_across_owners(
    database: Database,
) -> None:
    """Claims started at once and the gate's marks count together, fleet-wide; an
    owner's claims that run no more free their places for that owner only."""
    await insert(database, "b1", CREATED, ["GET"] * 30)  # its limit: 16 at once

    async def claim_starting(owner: str, count: int, start: int) -> list[claims.Claim]:
        async with database.write() as connection:
            return await claims.claim(
                connection, owner, CREATED, CREATED + 30, {"b1": count}, {"b1": start}
            )

    async def mark(owner: str, to_send: list[claims.Claim], finished: list[str]) -> claims.Marks:
        async with database.write() as connection:
            return await claims.mark_within_limits(
                connection, owner, CREATED, to_send, {"b1": finished}
            )

    first = await claim_starting("one", 10, 10)
    assert all(c.sent_at is not None for c in first)
    second = await claim_starting("two", 10, 10)
    # Only 6 places were left, and two runs nothing else there: 6 claims, all sent.
    assert [c.sent_at is not None for c in second] == [True] * 6
    # The batch is full: a claimer running nothing of it gets no claims to wait with ...
    assert await claim_starting("three", 5, 5) == []
    # ... one running some gets as many as its own will free, prefetched, unsent.
    unsent = await claim_starting("two", 8, 0)
    assert [c.sent_at for c in unsent] == [None] * 6
    assert await mark("two", unsent, []) == claims.Marks(set(), {c.id for c in unsent})
    more = await claim_starting("one", 2, 0)
    assert [c.sent_at for c in more] == [None, None]
    # Three of one's claims run no more: one may send two more in their places ...
    done = [c.id for c in first[:3]]
    assert await mark("one", more, done) == claims.Marks({c.id for c in more}, set())
    # ... but to two, whose count cannot leave them out, the batch is full.
    assert await mark("two", unsent, []) == claims.Marks(set(), {c.id for c in unsent})


async def test_primary_key_lookups_read_like_every_other_query(database: Database) -> None:
    await insert(database, "b1", CREATED, ["POST", "GET"])
    first, _ = await claim(database, "me", {"b1": 2})
    async with database.write() as connection:
        body = {"ok": [True, None, 2.5], "text": "é"}
        await claims.record_results(
            connection, "me", CREATED + 1, [result(first, OperationStatus.COMPLETED, body)]
        )
    for query, key in ((store.OPERATION_BY_ID, "b1-op0"), (store.BATCH_BY_ID, "b1")):
        looked_up = await database.fetch_one(query, {"id": key, "tenant": TENANT})
        async with database.read() as connection:
            read = (await connection.execute(query, {"id": key, "tenant": TENANT})).one()
        assert tuple(looked_up) == tuple(read)
        assert looked_up._fields == tuple(read._fields)
