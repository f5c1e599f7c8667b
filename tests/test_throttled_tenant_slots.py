"""A tenant the upstream throttles waits for its pause without holding the engine's
slots: another tenant's batch, with the slots to itself meanwhile, is not held back.

With 4 slots in all, tenant B's batch against a path that allows 2 requests a
second (then 429, Retry-After: 1) is paused again and again. B's claims made
before a pause (prefetched) would take every slot freed while they wait for
it, and tenant A's batch would wait a second at a time too (as it did when a
claim took its slot before the throttle admitted it). Retries are off, so that
what could hold a slot is a waiting claim, not an operation retrying its own 429.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from batchd.v1 import batch_pb2
from tests.grpc_client import GET, bearer, operation, run_batch, wait_completed
from tests.processes import OTHER_TOKEN, service_env, serving
from tests.upstream import UpstreamLog

SLOTS = 4


def largest_gap(times: list[float]) -> float:
    ordered = sorted(times)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=0.0)


async def test_a_paused_tenant_holds_no_slots_another_tenant_needs(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    env = service_env(
        database_url,
        upstream_server[0],
        BATCH_MAX_IN_FLIGHT=str(SLOTS),
        BATCH_MAX_IN_FLIGHT_PER_BATCH=str(SLOTS),
        BATCH_MAX_RETRIES="0",
        BATCH_MAX_UPSTREAM_PAUSE="5",
    )
    seen = upstream_server[1].requests
    async with serving(env, tmp_path / "service.log") as (_, stub):
        throttled = await stub.CreateBatch(
            batch_pb2.CreateBatchRequest(
                batch=batch_pb2.Batch(
                    batch_operations=[operation(GET, f"/limited/b/2/{n}") for n in range(60)]
                )
            ),
            metadata=bearer(OTHER_TOKEN),
        )
        # Beyond its first 2 requests B is refused, so paused, with claims waiting.
        while sum(1 for r in seen if r.path.startswith("/limited/b/")) <= 2:
            await asyncio.sleep(0.01)
        started_at = seen[-1].at
        # 100 requests of 50 ms, 4 at a time at most: well over a second of B's pauses.
        healthy = await run_batch(stub, [operation(GET, f"/slow/0.05/a/{n}") for n in range(100)])
        refused = await wait_completed(stub, throttled.batch.id, 60, token=OTHER_TOKEN)
    healthy_times = [started_at] + [r.at for r in seen if r.path.startswith("/slow/0.05/a/")]
    throttled_times = [r.at for r in seen if r.path.startswith("/limited/b/")]
    assert {op.response_status for op in healthy.batch_operations} == {200}
    # B was paused for a second at least once while A ran ...
    assert largest_gap([t for t in throttled_times if t <= max(healthy_times)]) >= 0.9
    # ... and A's requests never waited for B's pause.
    assert largest_gap(healthy_times) < 0.5
    assert {op.response_status for op in refused.batch_operations} <= {200, 429}
