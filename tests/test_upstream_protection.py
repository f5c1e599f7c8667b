"""Protecting the upstream: 429 retried for every method, fleet-wide rate limits in the
database, and adaptive back-off from the upstream's own signals."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path

import aiohttp

from batchd.v1 import batch_pb2, batch_pb2_grpc
from service import rate_buckets
from service.database import open_database
from service.engine.throttle import PAUSE_POLL_SECONDS, Throttle
from service.migrate import upgrade_database
from service.settings import ServiceSettings
from tests import postgres
from tests.grpc_client import GET, POST, bearer, operation, run_batch, wait_completed
from tests.processes import OTHER_TOKEN, free_port, replicas_serving, service_env, serving
from tests.upstream import SeenRequest, Span, UpstreamLog

PATCH = batch_pb2.HTTP_METHOD_PATCH


async def test_a_429_is_retried_for_every_method_with_its_idempotency_key(
    stub: batch_pb2_grpc.BatchServiceStub, upstream_server: tuple[str, UpstreamLog]
) -> None:
    batch = await run_batch(
        stub,
        [
            operation(POST, "/flaky/post/1/429", body={"n": 1}, query_params={"retry_after": 1}),
            operation(PATCH, "/flaky/patch/2/429", body={"n": 2}),
            operation(GET, "/flaky/get/1/429"),
            # A 503 may come after the upstream acted: a POST is still never re-sent.
            operation(POST, "/flaky/post503/1/503", body={"n": 3}),
        ],
    )
    post, patch, get, post_503 = batch.batch_operations
    assert (post.status, post.response_status, post.attempts) == (
        batch_pb2.BATCH_OPERATION_STATUS_COMPLETED,
        200,
        2,
    )
    assert (patch.response_status, patch.attempts) == (200, 3)
    assert (get.response_status, get.attempts) == (200, 2)
    assert (post_503.response_status, post_503.attempts) == (503, 1)
    sends = upstream_server[1].by_idempotency_key()
    assert (sends[post.id], sends[patch.id], sends[post_503.id]) == (2, 3, 1)
    post_sends = [r for r in upstream_server[1].requests if r.path.startswith("/flaky/post/")]
    assert [r.body for r in post_sends] == [{"n": 1}, {"n": 1}]


async def test_a_post_refused_twice_then_created_reached_the_upstream_three_times(
    stub: batch_pb2_grpc.BatchServiceStub, upstream_server: tuple[str, UpstreamLog]
) -> None:
    batch = await run_batch(
        stub,
        [operation(POST, "/flaky/created/2/429", body={"n": 1}, query_params={"then": 201})],
    )
    [post] = batch.batch_operations
    assert (post.status, post.response_status, post.attempts) == (
        batch_pb2.BATCH_OPERATION_STATUS_COMPLETED,
        201,
        3,
    )
    arrivals = [r for r in upstream_server[1].requests if r.path == "/flaky/created/2/429"]
    assert [(r.method, r.body) for r in arrivals] == [("POST", {"n": 1})] * 3
    assert {r.headers["Idempotency-Key"] for r in arrivals} == {post.id}


def most_in_any_window(times: list[float], window: float) -> int:
    """The most of these moments that fall within any `window` seconds."""
    ordered = sorted(times)
    most = start = 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] > window:
            start += 1
        most = max(most, end - start + 1)
    return most


def assert_within_rate(
    times: list[float], rate: float, burst: int, slack: float | None = None
) -> None:
    """A token bucket lets through at most rate * window + burst in any window.
    Delivery may bunch requests by `slack` seconds: loopback's few milliseconds
    (SLACK), or as long as the upstream's process was kept waiting."""
    slack = SLACK if slack is None else slack
    for window in (0.5, 1.0, 2.0):
        assert most_in_any_window(times, window) <= rate * (window + slack) + burst, window


def assert_measured_rate_at_most(times: list[float], rate: float) -> None:
    """The rate the upstream measured over the whole run: requests after the
    first, over the time from the first to the last."""
    measured = (len(times) - 1) / (max(times) - min(times))
    print(f"the upstream measured {measured:.2f} requests/s against a limit of {rate}/s")
    assert measured <= 1.15 * rate, measured


SLACK = 0.05
RATE = 20
BURST = 4


def mixed_operations(count: int, path: str) -> list[batch_pb2.BatchOperation]:
    return [
        operation(POST, f"{path}/{n}", body={"n": n}) if n % 2 else operation(GET, f"{path}/{n}")
        for n in range(count)
    ]


def limited_env(database_url: str, upstream_url: str, **overrides: str) -> dict[str, str]:
    return service_env(
        database_url,
        upstream_url,
        BATCH_UPSTREAM_RATE_LIMIT=str(RATE),
        BATCH_UPSTREAM_RATE_BURST=str(BURST),
        **overrides,
    )


async def test_the_upstream_rate_limit_holds_and_the_upstream_refuses_nothing(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    # The upstream itself refuses beyond RATE + BURST a second (one more for delivery
    # jitter, as SLACK): it must never have to, unless its own process was kept
    # waiting longer than that and the requests sent meanwhile came at once (see
    # the next test): those refusals are retried, and counted.
    path = f"/limited/all/{RATE + BURST + 1}"
    env = limited_env(database_url, upstream_server[0])
    async with serving(env, tmp_path / "service.log") as (_, stub):
        batch = await run_batch(stub, mixed_operations(600, path), timeout=120)
    log = upstream_server[1]
    assert {op.response_status for op in batch.batch_operations} == {200}
    refused = assert_sent_until_accepted(log.spans, [batch.batch_operations])
    assert len(log.requests) == 600 + refused
    if log.longest_stall <= SLACK:
        assert refused == 0
    arrivals = [r.at for r in log.requests]
    assert_within_rate(arrivals, RATE, BURST, SLACK + log.longest_stall)
    assert_measured_rate_at_most(arrivals, RATE)


async def test_two_replicas_share_one_upstream_rate_limit(
    private_postgres: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    url = postgres.url_of(private_postgres)
    path = f"/limited/all/{RATE + BURST + 1}"
    # INFO: each replica logs the operations it ran. Each may hold 16 claims (twice its 8
    # slots), fewer than the two batches' room (32 each), so both replicas must send:
    # with 128 a replica, the first to claim could take everything and the check below
    # would be luck.
    envs = [
        limited_env(url, upstream_server[0], BATCH_LOG_LEVEL="INFO", BATCH_MAX_IN_FLIGHT="8")
        for _ in range(2)
    ]
    async with replicas_serving(envs, tmp_path) as (replicas, stubs):
        created = [
            await stubs[0].CreateBatch(
                batch_pb2.CreateBatchRequest(
                    batch=batch_pb2.Batch(batch_operations=mixed_operations(80, f"{path}/{b}"))
                ),
                metadata=bearer(),
            )
            for b in range(2)
        ]
        batches = [await wait_completed(stubs[0], c.batch.id, timeout=60) for c in created]
        for replica in replicas:
            assert await replica.stop() == 0
    log = upstream_server[1]
    for batch in batches:
        assert {op.response_status for op in batch.batch_operations} == {200}
    # Both replicas sent: the limit held across processes, not within one.
    ran = [replica.log().count('"message": "operation finished"') for replica in replicas]
    assert sum(ran) == 160 and min(ran) > 0, ran
    # The fleet sends within the limit; the upstream counts arrivals, which a loaded
    # machine may bunch (its own process kept waiting, the requests sent meanwhile
    # come at once) beyond what it accepts in a second. So it may refuse some (429,
    # Retry-After: 1): each refusal is retried with the same Idempotency-Key and counted
    # in the stored attempts, and the limit holds for retries too. Never more: an
    # operation the upstream accepted is never sent again, by any replica.
    refused = assert_sent_until_accepted(log.spans, [b.batch_operations for b in batches])
    assert len(log.requests) == 160 + refused
    print(f"{refused} refused; the upstream's longest stall {log.longest_stall:.3f} s")
    if log.longest_stall <= SLACK:
        assert refused == 0
    arrivals = [r.at for r in log.requests]
    assert_within_rate(arrivals, RATE, BURST, SLACK + log.longest_stall)
    assert_measured_rate_at_most(arrivals, RATE)


def assert_sent_until_accepted(
    spans: list[Span], batches: list[Sequence[batch_pb2.BatchOperation]]
) -> int:
    """Every operation reached the upstream under its own Idempotency-Key, one attempt
    after another, refused (429) until one was accepted (200) and never sent after it;
    its stored attempts are the ones the upstream saw. How many were refused."""
    by_key: dict[str, list[Span]] = {}
    for span in sorted(spans, key=lambda s: s.start):
        by_key.setdefault(span.idempotency_key, []).append(span)
    operations = {op.id: op for ops in batches for op in ops}
    assert by_key.keys() == operations.keys()
    for key, attempts in by_key.items():
        statuses = [span.status for span in attempts]
        assert statuses == [429] * (len(attempts) - 1) + [200], (key, statuses)
        assert all(a.end <= b.start for a, b in itertools.pairwise(attempts)), key
        assert operations[key].attempts == len(attempts), key
    return sum(len(attempts) - 1 for attempts in by_key.values())


def largest_gap(times: list[float]) -> float:
    ordered = sorted(times)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=0.0)


async def test_one_tenants_throttling_does_not_pause_another_tenant(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    """Tenant B is refused (429, Retry-After: 1) and paused; tenant A's batch,
    sent meanwhile to a healthy path, is never paused."""
    metrics_address = f"127.0.0.1:{free_port()}"
    env = service_env(
        database_url,
        upstream_server[0],
        BATCH_MAX_UPSTREAM_PAUSE="5",
        BATCH_METRICS_ADDRESS=metrics_address,
    )
    seen = upstream_server[1].requests
    async with serving(env, tmp_path / "service.log") as (_, stub):
        throttled = await stub.CreateBatch(
            batch_pb2.CreateBatchRequest(
                batch=batch_pb2.Batch(batch_operations=mixed_operations(40, "/limited/b/5"))
            ),
            metadata=bearer(OTHER_TOKEN),
        )
        while not any(r.path.startswith("/limited/b/") for r in seen[5:]):
            await asyncio.sleep(0.01)
        created_at = time.monotonic()
        healthy = await run_batch(stub, mixed_operations(200, "/echo/a"), timeout=60)
        refused = await wait_completed(stub, throttled.batch.id, 60, token=OTHER_TOKEN)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{metrics_address}/metrics") as response,
        ):
            metrics = await response.text()
    healthy_times = [created_at] + [r.at for r in seen if r.path.startswith("/echo/a/")]
    throttled_times = [r.at for r in seen if r.path.startswith("/limited/b/")]
    assert {op.response_status for op in healthy.batch_operations} == {200}
    assert {op.attempts for op in healthy.batch_operations} == {1}
    # B was paused: a second without a request of its own, at least once ...
    assert largest_gap(throttled_times) >= 0.9
    # ... while A's requests never waited anything like it.
    assert largest_gap(healthy_times) < 0.9
    # Every request of B's not answered 200 by the upstream was a 429.
    accepted = sum(1 for op in refused.batch_operations if op.response_status == 200)
    refusals = len(throttled_times) - accepted
    assert f'batchd_upstream_throttled_total{{status="429",tenant="tenant-b"}} {refusals}.0' in (
        metrics
    )
    assert 'batchd_upstream_throttled_total{status="429",tenant="tenant-a"}' not in metrics
    assert 'batchd_upstream_concurrency{tenant="tenant-a"} 64.0' in metrics
    assert 'batchd_upstream_pause_seconds{tenant="tenant-a"} 0.0' in metrics


async def test_the_concurrency_window_drops_after_429s_and_recovers(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    env = service_env(
        database_url,
        upstream_server[0],
        BATCH_MAX_IN_FLIGHT="32",
        BATCH_MAX_IN_FLIGHT_PER_BATCH="32",
    )
    async with serving(env, tmp_path / "service.log") as (_, stub):
        batch = await run_batch(
            stub, [operation(GET, f"/refusing/g/32/{n}") for n in range(400)], timeout=60
        )
    assert {op.response_status for op in batch.batch_operations} == {200}
    seen = upstream_server[1].requests
    refused, answered = seen[:32], seen[32:]
    # The first 32 arrived together: the window started at its widest.
    assert max(r.in_flight for r in refused) >= 16
    # The refusals halved the window once (all 32 were sent before the first cut):
    # the next requests came at most 16 at once, until healthy answers widened it ...
    assert max(r.in_flight for r in answered[:12]) <= 16
    # ... and healthy answers widened it again to the whole process's limit.
    assert max(r.in_flight for r in answered[-200:]) >= 28


async def test_a_pause_one_replica_was_asked_for_holds_on_every_replica(
    database_url: str,
) -> None:
    """Two replicas' throttles on one database: a Retry-After one of them got
    pauses the tenant on the other, in the database's time, and no other tenant."""
    await upgrade_database(database_url)
    settings = ServiceSettings(database_url=database_url, api_tokens="t:tenant")
    databases = [open_database(database_url) for _ in range(2)]
    first, second = (Throttle(database, settings) for database in databases)
    sharing = [asyncio.create_task(throttle.run()) for throttle in (first, second)]
    try:
        admitted_at = await first.admit("paused")
        first.finished("paused", admitted_at, 429, retry_after=2.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not second.holding_back("paused"):
            assert loop.time() < deadline, "the pause never reached the other replica"
            await asyncio.sleep(0.01)
        heard_at = time.monotonic()
        assert not second.holding_back("other")
        await asyncio.wait_for(second.admit("other"), 1)
        await second.admit("paused")
        # Released when the pause ends: about 2 s after it began, never at once.
        assert time.monotonic() - heard_at >= 2.0 - 2 * PAUSE_POLL_SECONDS - 0.1
    finally:
        for task in sharing:
            task.cancel()
        await asyncio.gather(*sharing, return_exceptions=True)
        for database in databases:
            await database.dispose()


async def test_a_take_grants_what_the_bucket_holds_and_never_beyond_its_burst(
    database_url: str,
) -> None:
    await upgrade_database(database_url)
    database = open_database(database_url)
    try:
        async with database.write() as connection:
            assert await rate_buckets.take(connection, "b", 1, 1.0, 4) is None
            await rate_buckets.ensure_bucket(connection, "b", 4)
            await rate_buckets.ensure_bucket(connection, "b", 4)  # made once
        async with database.write() as connection:
            # A chunk larger than the bucket gets what it holds, no more ...
            whole = await rate_buckets.take(connection, "b", 10, 1.0, 4)
            # ... and at a token a second nothing is left a moment later.
            again = await rate_buckets.take(connection, "b", 10, 1.0, 4)
        assert whole is not None and whole.granted == 4
        assert again is not None and again.granted == 0 and 0 <= again.left < 1
        async with database.write() as connection:
            await rate_buckets.give_back(connection, "b", 100, 4)
            capped = await rate_buckets.take(connection, "b", 10, 1.0, 4)
        assert capped is not None and capped.granted == 4
    finally:
        await database.dispose()


def refusals_after(requests: list[SeenRequest], since: float) -> tuple[int, int]:
    """Of the requests that arrived after `since`: how many, and how many were
    refused. An operation's attempts on /limited end at its first 2xx (the
    test checks it), so every attempt of a key but its last was a 429."""
    by_key: dict[str, list[SeenRequest]] = {}
    for request in requests:
        by_key.setdefault(request.headers["Idempotency-Key"], []).append(request)
    later = [r for r in requests if r.at > since]
    refused = [r for attempts in by_key.values() for r in attempts[:-1] if r.at > since]
    return len(later), len(refused)


# What the adapting upstream accepts in any second: low enough that a loaded
# machine still sends faster, so the adaptation is what keeps 429s away.
ADAPTING_RATE = 30


async def test_without_a_configured_limit_adaptation_keeps_429s_rare(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    env = service_env(
        database_url,
        upstream_server[0],
        BATCH_MAX_IN_FLIGHT_PER_BATCH="64",
        BATCH_METRICS_ADDRESS=f"127.0.0.1:{free_port()}",
    )
    path = f"/limited/adapting/{ADAPTING_RATE}"
    async with serving(env, tmp_path / "service.log") as (_, stub):
        batch = await run_batch(stub, mixed_operations(360, path), timeout=120)
    seen = upstream_server[1].requests
    assert {op.status for op in batch.batch_operations} == {
        batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
    }
    assert {op.response_status for op in batch.batch_operations} == {200}
    assert sum(op.attempts for op in batch.batch_operations) == len(seen)
    # The first burst found the limit: refused beyond it ...
    total, refused = refusals_after(seen, -math.inf)
    assert refused > 0
    # ... and from two seconds on, the sends kept under it.
    later, refused_later = refusals_after(seen, seen[0].at + 2)
    print(f"429s: {refused}/{total} in all, {refused_later}/{later} after two seconds")
    assert later > 200
    assert refused_later < 0.05 * later, (refused_later, later)


async def test_get_and_watch_say_while_a_batch_is_held_back_by_an_upstream_pause(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    env = service_env(database_url, upstream_server[0])
    pause = batch_pb2.HeldBack.REASON_UPSTREAM_PAUSE
    async with serving(env, tmp_path / "service.log") as (_, stub):
        # Another tenant's batch, unfinished throughout: never held back by this pause.
        others = await stub.CreateBatch(
            batch_pb2.CreateBatchRequest(
                batch=batch_pb2.Batch(batch_operations=[operation(GET, "/slow/4/other")])
            ),
            metadata=bearer(OTHER_TOKEN),
        )
        created = await stub.CreateBatch(
            batch_pb2.CreateBatchRequest(
                batch=batch_pb2.Batch(
                    batch_operations=[
                        operation(GET, "/flaky/held/1/429", query_params={"retry_after": 2})
                    ]
                )
            ),
            metadata=bearer(),
        )
        watching = stub.WatchBatch(
            batch_pb2.WatchBatchRequest(id=created.batch.id), metadata=bearer()
        )
        events = asyncio.create_task(batches_of(watching))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            held = (
                await stub.GetBatch(
                    batch_pb2.GetBatchRequest(id=created.batch.id), metadata=bearer()
                )
            ).batch
            if held.HasField("held_back"):
                break
            assert loop.time() < deadline, "GetBatch never said the batch is held back"
            await asyncio.sleep(0.05)
        other = (
            await stub.GetBatch(
                batch_pb2.GetBatchRequest(id=others.batch.id), metadata=bearer(OTHER_TOKEN)
            )
        ).batch
        watched = await asyncio.wait_for(events, 30)
        done = (
            await stub.GetBatch(batch_pb2.GetBatchRequest(id=created.batch.id), metadata=bearer())
        ).batch
    assert held.held_back.reason == pause
    # Until about two seconds after the 429 (Retry-After: 2), on the database's clock.
    [refusal, _] = [r for r in upstream_server[1].requests if r.path == "/flaky/held/1/429"]
    refused_at = time.time() - (time.monotonic() - refusal.at)
    until = held.held_back.until.ToMicroseconds() / 1e6
    assert refused_at + 1 < until < refused_at + 3, (until, refused_at)
    assert other.status != batch_pb2.BATCH_STATUS_COMPLETED and not other.HasField("held_back")
    # The stream said so while it lasted; the batch it ended with is held back no more.
    assert any(batch.held_back.reason == pause for batch in watched), watched
    assert watched[-1].status == batch_pb2.BATCH_STATUS_COMPLETED
    assert not watched[-1].HasField("held_back")
    assert done.status == batch_pb2.BATCH_STATUS_COMPLETED and not done.HasField("held_back")


async def batches_of(stream: AsyncIterable[batch_pb2.WatchBatchResponse]) -> list[batch_pb2.Batch]:
    return [event.batch async for event in stream]


@contextlib.asynccontextmanager
async def throttle_alone(tmp_path: Path) -> AsyncIterator[Throttle]:
    """A throttle with no engine around it and no configured limits (its database unused)."""
    settings = ServiceSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", api_tokens="t:tenant"
    )
    database = open_database(settings.database_url)
    try:
        yield Throttle(database, settings)
    finally:
        await database.dispose()


async def refused_after_healthy_answers(throttle: Throttle, tenant: str, healthy: int) -> None:
    """`healthy` answers of 200, then a 429: the tenant learns a rate from them."""
    for _ in range(healthy):
        admitted_at = await throttle.admit(tenant)
        throttle.finished(tenant, admitted_at, 200, None)
    admitted_at = await throttle.admit(tenant)
    throttle.finished(tenant, admitted_at, 429, None)


async def test_a_refusal_after_healthy_answers_paces_the_tenant_at_a_learned_rate(
    tmp_path: Path,
) -> None:
    """20 healthy answers in the last second, then a 429: the tenant's next sends
    go at 70% of 20 a second, one by one; another tenant is not paced."""
    async with throttle_alone(tmp_path) as throttle:
        await refused_after_healthy_answers(throttle, "paced", 20)
        began = time.monotonic()
        sent: list[float] = []

        async def send(tenant: str) -> None:
            admitted_at = await throttle.admit(tenant)
            sent.append(time.monotonic())
            throttle.finished(tenant, admitted_at, 200, None)

        waiting = [asyncio.create_task(send("paced")) for _ in range(8)]
        await asyncio.sleep(0)
        assert throttle.holding_back("paced") and not throttle.holding_back("other")
        await send("other")
        await asyncio.gather(*waiting)
        # Eight turns about 1/14 s apart after the refusal's own, the rate growing
        # by a step a second meanwhile: never much sooner.
        assert max(sent) - began >= 7 / 15


async def test_first_attempts_entering_at_once_wait_for_the_learned_rate_too(
    tmp_path: Path,
) -> None:
    """The engine's first attempts enter with `try_enter` (so that a slot goes only to
    an attempt that can be sent): once a 429 taught the tenant a rate, they get one
    turn at a time, as retries do, and the engine is told when the next one is."""
    async with throttle_alone(tmp_path) as throttle:
        await refused_after_healthy_answers(throttle, "paced", 5)
        assert not throttle.try_enter("paced")  # the refusal's own turn spaces the next
        wait = throttle.next_turn_in("paced")
        assert 0 < wait <= 1
        await asyncio.sleep(wait)
        entered = 0
        while throttle.try_enter("paced"):
            entered += 1
        assert entered == 1
        assert throttle.next_turn_in("paced") > 0
        assert throttle.try_enter("other") and throttle.next_turn_in("other") == 0
