"""A batch's own limits and its cancel hold across three replicas on one PostgreSQL.

Overlap is measured at the upstream, from its own start and end times of each
request, so what is checked is what the upstream saw, wherever each operation ran.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests import postgres
from tests.grpc_client import GET, bearer, operation, wait_completed, wait_finished_at_least
from tests.processes import replicas_serving, service_env
from tests.upstream import Span, UpstreamLog

REPLICAS = 3
PER_BATCH_LIMIT = 4


@pytest.fixture
async def fleet(
    private_postgres: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> AsyncIterator[list[batch_pb2_grpc.BatchServiceStub]]:
    """Three replicas, each allowed 16 running operations but 4 of any one batch."""
    envs = [
        service_env(
            postgres.url_of(private_postgres),
            upstream_server[0],
            BATCH_MAX_OPERATIONS="1000",
            BATCH_MAX_IN_FLIGHT="16",
            BATCH_MAX_IN_FLIGHT_PER_BATCH=str(PER_BATCH_LIMIT),
        )
        for _ in range(REPLICAS)
    ]
    async with replicas_serving(envs, tmp_path) as (replicas, stubs):
        yield stubs
    for replica in replicas:
        assert await replica.stop() == 0, replica.log()


async def create(
    stub: batch_pb2_grpc.BatchServiceStub,
    operations: list[batch_pb2.BatchOperation],
    options: batch_pb2.ExecutionOptions | None = None,
) -> str:
    batch = batch_pb2.Batch(batch_operations=operations, execution_options=options)
    created = await stub.CreateBatch(batch_pb2.CreateBatchRequest(batch=batch), metadata=bearer())
    return str(created.batch.id)


def spans_of(log: UpstreamLog, prefix: str) -> list[Span]:
    return sorted((s for s in log.spans if s.path.startswith(prefix)), key=lambda s: s.start)


def most_at_once(spans: Sequence[Span]) -> int:
    """The most requests the upstream was answering at one instant."""
    # At equal times an end comes first: touching intervals do not overlap.
    edges = sorted([(s.start, 1) for s in spans] + [(s.end, -1) for s in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


async def test_a_sequential_batch_runs_in_submitted_order_one_at_a_time_across_replicas(
    fleet: list[batch_pb2_grpc.BatchServiceStub], upstream_server: tuple[str, UpstreamLog]
) -> None:
    count = 40
    operations = [operation(GET, f"/slow/0.01/seq/{n}") for n in range(count)]
    options = batch_pb2.ExecutionOptions(sequential=True)
    batch_id = await create(fleet[0], operations, options)
    await wait_completed(fleet[1], batch_id, timeout=60)

    spans = spans_of(upstream_server[1], "/slow/0.01/seq/")
    assert [int(s.path.rsplit("/", 1)[1]) for s in spans] == list(range(count))
    for earlier, later in itertools.pairwise(spans):
        assert later.start >= earlier.end, f"{later.path} started before {earlier.path} ended"


async def test_max_concurrency_and_the_per_batch_limit_hold_across_replicas(
    fleet: list[batch_pb2_grpc.BatchServiceStub], upstream_server: tuple[str, UpstreamLog]
) -> None:
    limited = [operation(GET, f"/slow/0.05/capped/{n}") for n in range(60)]
    unlimited = [operation(GET, f"/slow/0.05/default/{n}") for n in range(80)]
    capped_id = await create(fleet[0], limited, batch_pb2.ExecutionOptions(max_concurrency=3))
    default_id = await create(fleet[1], unlimited)
    for batch_id in (capped_id, default_id):
        await wait_completed(fleet[2], batch_id, timeout=60)

    capped = spans_of(upstream_server[1], "/slow/0.05/capped/")
    default = spans_of(upstream_server[1], "/slow/0.05/default/")
    assert len(capped) == 60 and len(default) == 80
    # Each replica alone would run 3 (and 4) of them at once: three of them, 9 (12).
    assert 2 <= most_at_once(capped) <= 3
    assert 2 <= most_at_once(default) <= PER_BATCH_LIMIT


async def test_cancel_stops_every_replica_and_no_canceled_operation_was_sent(
    fleet: list[batch_pb2_grpc.BatchServiceStub], upstream_server: tuple[str, UpstreamLog]
) -> None:
    log = upstream_server[1]
    count = 1000
    # Durations of 20 to 60 ms, so that replicas do not run in waves and always
    # hold claims not yet sent.
    operations = [operation(GET, f"/slow/0.0{2 + n % 5}/cancel/{n}") for n in range(count)]
    batch_id = await create(fleet[0], operations)
    await wait_finished_at_least(fleet[1], batch_id, 40)

    await fleet[2].CancelBatch(batch_pb2.CancelBatchRequest(id=batch_id), metadata=bearer())
    canceled_at = time.monotonic()
    batch = await wait_completed(
        fleet[0], batch_id, timeout=60, statuses=(batch_pb2.BATCH_STATUS_CANCELED,)
    )
    # Anything still to send would have gone by now.
    await asyncio.sleep(0.5)

    spans = [s for s in log.spans if "/cancel/" in s.path]
    running_then = [s for s in spans if s.start <= canceled_at < s.end]
    sent_after = [s for s in spans if s.start > canceled_at]
    # What the upstream was answering when the cancel returned, and what reaches
    # it later, were all decided before the cancel: at most the batch's limit of
    # claims, fleet-wide. Replicas' prefetched claims are never sent.
    assert len(running_then) + len(sent_after) <= PER_BATCH_LIMIT, (running_then, sent_after)
    sent_keys = set(log.by_idempotency_key())
    canceled = [
        op.id
        for op in batch.batch_operations
        if op.status == batch_pb2.BATCH_OPERATION_STATUS_CANCELED
    ]
    assert len(canceled) > count // 2
    assert not sent_keys & set(canceled)
    for op in batch.batch_operations:
        if op.id in sent_keys:
            assert op.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
