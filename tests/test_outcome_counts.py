"""Outcome counts (issue 15): how a batch's operations ended, on every gRPC Batch and on
REST with expand[]=outcome_counts, matching the operations themselves."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import aiohttp
from google.protobuf import json_format
from sqlalchemy.dialects import sqlite

from batchd.v1 import batch_pb2, batch_pb2_grpc
from batchd.vocabulary import OPERATION_STATUS_NAMES
from service.database import open_database
from service.migrate import upgrade
from service.outcome_counts import BATCHES_WITH_COUNTS
from tests.grpc_client import (
    GET,
    POST,
    bearer,
    operation,
    wait_completed,
    wait_finished_at_least,
)
from tests.processes import gateway_env, service_env, serving, start_gateway
from tests.rest import AUTH, assert_batch, assert_error, call
from tests.statements import with_values
from tests.upstream import UpstreamLog

Counts = dict[str, int]


def counted_from(batch: batch_pb2.Batch) -> Counts:
    """The counts as the operations themselves tell them."""
    counts: Counter[str] = Counter()
    for op in batch.batch_operations:
        name = OPERATION_STATUS_NAMES[op.status]
        if name in ("completed", "failed", "timed_out", "canceled"):
            counts[name] += 1
        if name == "completed":
            counts[f"responses_{op.response_status // 100}xx"] += 1
    return {field: counts[field] for field in FIELDS}


FIELDS = [field.name for field in batch_pb2.BatchOutcomeCounts.DESCRIPTOR.fields]


def as_dict(counts: batch_pb2.BatchOutcomeCounts) -> Counts:
    return {field: getattr(counts, field) for field in FIELDS}


def assert_consistent(batch: batch_pb2.Batch) -> None:
    """The statuses add up to the finished count, the response classes to `completed`."""
    counts = batch.outcome_counts
    assert batch.HasField("outcome_counts")
    ended = counts.completed + counts.failed + counts.timed_out + counts.canceled
    assert ended == batch.finished_batch_operations_count, batch
    responses = (
        counts.responses_2xx + counts.responses_3xx + counts.responses_4xx + counts.responses_5xx
    )
    assert responses == counts.completed


async def create(
    stub: batch_pb2_grpc.BatchServiceStub,
    operations: list[batch_pb2.BatchOperation],
    options: batch_pb2.ExecutionOptions | None = None,
) -> batch_pb2.Batch:
    batch = batch_pb2.Batch(batch_operations=operations, execution_options=options)
    reply = await stub.CreateBatch(batch_pb2.CreateBatchRequest(batch=batch), metadata=bearer())
    created: batch_pb2.Batch = reply.batch
    return created


async def test_outcome_counts_match_the_operations_on_grpc_and_rest(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    env = service_env(database_url, upstream_server[0], BATCH_OPERATION_TIMEOUT="1")
    async with serving(env, tmp_path / "service.log") as (_, stub):
        mixed = await create(
            stub,
            [
                *(operation(POST, f"/status/{code}") for code in (200, 201, 302, 404, 422, 500)),
                operation(POST, "/status/503"),
                operation(POST, "/cutoff"),  # failed: the connection is cut
                operation(GET, "/slow/3"),  # timed out
            ],
        )
        # The fresh batch: counts present, and nothing ended yet.
        assert mixed.HasField("outcome_counts") and as_dict(mixed.outcome_counts) == dict.fromkeys(
            FIELDS, 0
        )
        stopping = await create(
            stub,
            [operation(POST, f"/status/{code}") for code in (200, 404, 200, 200)],
            batch_pb2.ExecutionOptions(sequential=True, stop_on_failure=True),
        )
        finished_mixed = await wait_completed(stub, mixed.id)
        finished_stopping = await wait_completed(stub, stopping.id)

        assert as_dict(finished_mixed.outcome_counts) == counted_from(finished_mixed)
        assert as_dict(finished_mixed.outcome_counts) == {
            "completed": 7,
            "failed": 1,
            "timed_out": 1,
            "canceled": 0,
            "responses_2xx": 2,
            "responses_3xx": 1,
            "responses_4xx": 2,
            "responses_5xx": 2,
        }
        assert as_dict(finished_stopping.outcome_counts) == counted_from(finished_stopping)
        assert finished_stopping.outcome_counts.canceled == 2
        assert finished_stopping.outcome_counts.responses_4xx == 1

        listed = await stub.ListBatches(batch_pb2.ListBatchesRequest(), metadata=bearer())
        by_id = {batch.id: batch for batch in listed.batches}
        assert by_id[mixed.id].outcome_counts == finished_mixed.outcome_counts
        assert by_id[stopping.id].outcome_counts == finished_stopping.outcome_counts

        gateway, base_url = await start_gateway(
            gateway_env(env["BATCH_GRPC_ADDRESS"]), tmp_path / "gateway.log"
        )
        try:
            async with aiohttp.ClientSession(base_url=base_url, headers=AUTH) as http:
                await assert_rest_counts(http, mixed.id, as_dict(finished_mixed.outcome_counts))
        finally:
            await gateway.stop()


async def assert_rest_counts(http: aiohttp.ClientSession, batch_id: str, expected: Counts) -> None:
    plain = await call(http, "GET", f"/v1/batches/{batch_id}", 200)
    assert_batch(plain, extended=True)  # the contract's keys, exactly: no counts
    counted = await call(http, "GET", f"/v1/batches/{batch_id}?expand[]=outcome_counts", 200)
    assert_batch(counted, extended=True, counted=True)
    assert counted["outcome_counts"] == expected
    both = await call(
        http,
        "GET",
        f"/v1/batches/{batch_id}?expand[]=outcome_counts&expand[]=batch_operations",
        200,
    )
    assert_batch(both, expanded=True, extended=True, counted=True)
    listed = await call(http, "GET", "/v1/batches?expand[]=outcome_counts", 200)
    [shown] = [batch for batch in listed["data"] if batch["id"] == batch_id]
    assert shown["outcome_counts"] == expected
    unknown = await call(http, "GET", f"/v1/batches/{batch_id}?expand[]=outcome_count", 400)
    assert_error(unknown, "bad_request")


async def test_cancel_and_watch_replies_carry_counts_that_add_up(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    env = service_env(database_url, upstream_server[0])
    async with serving(env, tmp_path / "service.log") as (_, stub):
        watched = await create(
            stub,
            [operation(POST, f"/status/{200 + (n % 3) * 100}") for n in range(30)],
            batch_pb2.ExecutionOptions(max_concurrency=2),
        )
        events = [
            event.batch
            async for event in stub.WatchBatch(
                batch_pb2.WatchBatchRequest(id=watched.id), metadata=bearer()
            )
        ]
        for batch in events:
            assert_consistent(batch)
        final = await wait_completed(stub, watched.id)
        assert events[-1].outcome_counts == final.outcome_counts
        assert as_dict(final.outcome_counts) == counted_from(final)

        slow = await create(
            stub,
            [operation(GET, f"/slow/0.3/{n}") for n in range(20)],
            batch_pb2.ExecutionOptions(max_concurrency=1),
        )
        await wait_finished_at_least(stub, slow.id, 1)
        canceled = await stub.CancelBatch(
            batch_pb2.CancelBatchRequest(id=slow.id), metadata=bearer()
        )
        assert_consistent(canceled.batch)
        # Every pending operation was canceled at once; one or two were running or done.
        assert canceled.batch.outcome_counts.canceled >= 17
        ended = await wait_completed(stub, slow.id, statuses=(batch_pb2.BATCH_STATUS_CANCELED,))
        assert as_dict(ended.outcome_counts) == counted_from(ended)
        # The JSON a gRPC client sees names the counts as the proto does.
        shown = json_format.MessageToDict(ended, preserving_proto_field_name=True)
        assert set(shown["outcome_counts"]) <= set(FIELDS)


async def test_on_sqlite_the_counts_read_only_the_covering_index(tmp_path: Path) -> None:
    """Never the operation rows, whose stored responses can be megabytes each."""
    database = open_database(f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}")
    try:
        await upgrade(database)
        statement = with_values(BATCHES_WITH_COUNTS, batch_ids=["a", "b"]).compile(
            dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
        )
        async with database.read() as connection:
            plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}")
            # EXPLAIN QUERY PLAN rows: id, parent, notused, detail.
            steps = "\n".join(str(row[-1]) for row in plan)
    finally:
        await database.dispose()
    assert (
        "SEARCH batch_operations USING COVERING INDEX ix_operations_batch_status_position" in steps
    )
    assert "SCAN batch_operations" not in steps and "SCAN batches" not in steps, steps
