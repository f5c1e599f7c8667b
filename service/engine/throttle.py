"""What holds each attempt back on its way to the upstream, per tenant.

Before an attempt is sent its tenant must not be paused, must have room in its
concurrency window, must have its turn at the rate learned from refusals, and
must hold a token of each configured rate limit:
- Tokens come from the database's buckets (rate_buckets.py), in chunks of at
  most CHUNK, and only as many as attempts are waiting, so a granted token is
  used at once: one held back would let a later burst exceed the limit.
- A 429 or 503 with Retry-After pauses the tenant, capped by
  BATCH_MAX_UPSTREAM_PAUSE, on every replica: the pause is written to the
  database and every replica reads the pauses each PAUSE_POLL_SECONDS.
- The window is AIMD, per tenant and per replica: halved by a 429 or 503
  (once per window: answers to attempts sent before the last cut do not cut
  again), one wider for each healthy answer while at least half of it is used,
  as Netflix's concurrency-limits AIMD limit does. It is per replica because
  each replica's own attempts tell it about the upstream, and sharing the count
  would cost a database round trip per attempt; every replica that is refused
  cuts its own.
- A window alone does not keep a rate-limited upstream from refusing: fast
  answers let any window send far more a second than the upstream allows. So
  a 429 or 503 also teaches the tenant a rate, per replica like the window:
  BACKOFF_RATIO of the healthy answers it had in the last second (what the
  upstream let through), or of the rate it had. The rate is cut at most once
  a RATE_EPOCH (a limit measured per second refuses for a while after it is
  reached), and raised by a step a second (RATE_STEP of the rate at the cut)
  while attempts wait for their turn: additive increase, multiplicative
  decrease, in requests per second. Turns are spaced 1/rate apart, so a
  learned rate never bursts.
Tenants are apart throughout: one tenant's pause, window and tokens never hold
another's attempt back (only the shared upstream bucket is shared, by design).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field

from service import metrics, rate_buckets
from service.database import Database
from service.engine.retrying import until_done
from service.settings import ServiceSettings

log = logging.getLogger(__name__)
CHUNK = 8
PAUSE_POLL_SECONDS = 0.25
THROTTLE_STATUSES = frozenset({429, 503})
BACKOFF_RATIO = 0.5
RATE_BACKOFF_RATIO = 0.7
RATE_EPOCH = 1.0
RATE_STEP = 0.05
MIN_RATE = 1.0


@dataclass(frozen=True)
class Limit:
    bucket: str
    rate: float
    burst: float


def _burst(rate: float, burst: int) -> float:
    """The configured burst, or one second's worth (at least one token)."""
    return float(burst) if burst > 0 else float(max(1, math.ceil(rate)))


@dataclass
class _Tenant:
    window: float
    in_flight: int = 0
    # loop.time() until which the tenant sends nothing.
    paused_until: float = 0.0
    last_cut: float = -math.inf
    # Attempts waiting for room in the window, and for tokens.
    for_room: deque[asyncio.Future[None]] = field(default_factory=deque)
    for_tokens: deque[asyncio.Future[None]] = field(default_factory=deque)
    refill: asyncio.Task[None] | None = None
    next_token_in: float = 0.0
    # The rate learned from refusals (None until the first), the step it grows
    # by a second, and when the next turn is.
    rate: float | None = None
    rate_step: float = 0.0
    rate_cut: float = -math.inf
    next_turn: float = 0.0
    # Attempts waiting for their turn (in `admit`), when the engine last found no turn
    # free (in `try_enter`), and when the last second's healthy answers came.
    for_turn: int = 0
    turn_wanted_at: float = -math.inf
    healthy: deque[float] = field(default_factory=deque)

    @property
    def allowed(self) -> int:
        return max(1, int(self.window))

    def turn_in(self, now: float) -> float:
        """Seconds until the learned rate lets an attempt go; 0 takes the turn."""
        if self.rate is None:
            return 0.0
        if self.next_turn > now:
            return self.next_turn - now
        # On schedule, but one turn missed at most: a late wake-up sends two, never a burst.
        self.next_turn = max(self.next_turn, now - 1 / self.rate) + 1 / self.rate
        return 0.0

    def answered_healthy(self, now: float) -> None:
        self.healthy.append(now)
        while self.healthy[0] <= now - RATE_EPOCH:
            self.healthy.popleft()
        if self.rate is not None and (self.for_turn or now - self.turn_wanted_at < RATE_EPOCH):
            # `rate` answers a second, each adding step/rate: step a second.
            self.rate += self.rate_step / self.rate

    def refused(self, now: float, admitted_at: float) -> None:
        if admitted_at < self.rate_cut or now < self.rate_cut + RATE_EPOCH:
            return
        while self.healthy and self.healthy[0] <= now - RATE_EPOCH:
            self.healthy.popleft()
        let_through = float(len(self.healthy)) if self.healthy else math.inf
        known = self.rate if self.rate is not None else math.inf
        if math.isinf(min(let_through, known)):
            return  # nothing to learn from yet: the window and pauses act alone
        self.rate = max(MIN_RATE, min(let_through, known) * RATE_BACKOFF_RATIO)
        self.rate_step = max(MIN_RATE, self.rate * RATE_STEP)
        self.rate_cut = now
        # The refused send was a turn too: the next one waits its spacing.
        self.next_turn = max(self.next_turn, now + 1 / self.rate)


class Throttle:
    def __init__(self, database: Database, settings: ServiceSettings) -> None:
        self.database = database
        self.max_window = float(settings.max_in_flight)
        self.max_pause = settings.max_upstream_pause
        self._upstream = (
            Limit(
                rate_buckets.UPSTREAM_BUCKET,
                settings.upstream_rate_limit,
                _burst(settings.upstream_rate_limit, settings.upstream_rate_burst),
            )
            if settings.upstream_rate_limit > 0
            else None
        )
        self._tenant_rate = settings.tenant_rate_limit
        self._tenant_burst = _burst(settings.tenant_rate_limit, settings.tenant_rate_burst)
        self._tenants: dict[str, _Tenant] = {}
        # Pauses this replica was asked for, not yet written to the database.
        self._to_publish: dict[str, float] = {}
        self._published = asyncio.Event()

    def holding_back(self, tenant: str) -> bool:
        """Whether the tenant's attempts are waiting here: claiming more of its
        work would only take slots other tenants could use."""
        state = self._tenants.get(tenant)
        if state is None:
            return False
        now = _now()
        waits_for_turn = state.for_turn > 0 or (state.rate is not None and state.next_turn > now)
        return state.paused_until > now or bool(state.for_room) or waits_for_turn

    async def admit(self, tenant: str) -> float:
        """Waits until an attempt of the tenant may be sent; when it was admitted.

        Every admitted attempt must be `finished`."""
        state = self._tenant(tenant)
        while True:
            now = _now()
            pause = state.paused_until - now
            if pause > 0:
                await asyncio.sleep(pause)
            elif state.in_flight >= state.allowed:
                await _queued(state.for_room)
            elif turn := state.turn_in(now):
                state.for_turn += 1
                try:
                    await asyncio.sleep(turn)
                finally:
                    state.for_turn -= 1
            else:
                break
        state.in_flight += 1
        return await self.admit_entered(tenant)

    def try_enter(self, tenant: str) -> bool:
        """Takes a place in the tenant's window at once if nothing holds it back (no
        pause, room, nobody waiting before it); then `admit_entered` completes the
        admission. Lets the engine give a slot only to an attempt that can go."""
        state = self._tenant(tenant)
        now = _now()
        if state.paused_until > now or state.for_room or state.in_flight >= state.allowed:
            return False
        if state.turn_in(now):  # the learned rate paces first attempts as it paces retries
            state.turn_wanted_at = now
            return False
        state.in_flight += 1
        return True

    def next_turn_in(self, tenant: str) -> float:
        """Seconds until the tenant's learned rate gives an attempt its turn; 0 when
        it has no learned rate or the turn is free."""
        state = self._tenants.get(tenant)
        if state is None or state.rate is None:
            return 0.0
        return max(0.0, state.next_turn - _now())

    def takes_tokens(self, tenant: str) -> bool:
        """Whether the tenant's attempts wait for rate-limit tokens once entered."""
        return bool(self._limits(tenant))

    async def admit_entered(self, tenant: str) -> float:
        """Admits an attempt that `try_enter` let in, once it holds its tokens; when."""
        state = self._tenants[tenant]
        try:
            await self._tokens(tenant, state)
        except BaseException:
            self._release(state)
            raise
        return _now()

    def finished(
        self, tenant: str, admitted_at: float, status: int | None, retry_after: float | None
    ) -> None:
        """An admitted attempt ended: with an HTTP status, or None (no answer)."""
        state = self._tenants[tenant]
        used = state.in_flight
        self._release(state)
        now = _now()
        if status in THROTTLE_STATUSES:
            metrics.upstream_throttled(tenant, status)
            if retry_after is not None and retry_after > 0:
                self._pause(tenant, state, min(retry_after, self.max_pause))
            if admitted_at >= state.last_cut:
                state.window = max(1.0, state.window * BACKOFF_RATIO)
                state.last_cut = now
            state.refused(now, admitted_at)
        elif status is not None and status < 500:
            state.answered_healthy(now)
            if used * 2 >= state.window:
                state.window = min(self.max_window, state.window + 1)
                _wake(state.for_room, state.allowed - state.in_flight)

    async def run(self) -> None:
        """Writes this replica's pauses and reads every replica's, for as long as it runs."""
        while True:
            await until_done("share upstream pauses", self._share_pauses)
            self._published.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._published.wait(), PAUSE_POLL_SECONDS)

    def _tenant(self, tenant: str) -> _Tenant:
        known = self._tenants.get(tenant)
        if known is not None:
            return known
        state = self._tenants[tenant] = _Tenant(self.max_window)
        metrics.watch_tenant(
            tenant,
            window=lambda: state.window,
            pause=lambda: max(0.0, state.paused_until - _now()),
        )
        return state

    def _release(self, state: _Tenant) -> None:
        state.in_flight -= 1
        _wake(state.for_room, state.allowed - state.in_flight)

    def _pause(self, tenant: str, state: _Tenant, seconds: float) -> None:
        until = _now() + seconds
        if until > state.paused_until:
            state.paused_until = until
            self._to_publish[tenant] = max(self._to_publish.get(tenant, 0.0), seconds)
            self._published.set()

    async def _share_pauses(self) -> None:
        to_publish, self._to_publish = self._to_publish, {}
        try:
            if to_publish:  # SQLite has one writer: no empty write transactions
                async with self.database.write() as connection:
                    for tenant, seconds in to_publish.items():
                        await rate_buckets.pause_tenant(connection, tenant, seconds)
        except BaseException:
            for tenant, seconds in to_publish.items():
                self._to_publish.setdefault(tenant, seconds)
            raise
        async with self.database.read() as connection:
            paused = await rate_buckets.paused_tenants(connection)
        now = _now()
        for tenant, left in paused.items():
            state = self._tenant(tenant)
            state.paused_until = max(state.paused_until, now + left)

    def _limits(self, tenant: str) -> list[Limit]:
        limits = []
        if self._tenant_rate > 0:
            bucket = rate_buckets.tenant_bucket(tenant)
            limits.append(Limit(bucket, self._tenant_rate, self._tenant_burst))
        if self._upstream is not None:
            # Always after the tenant's, so replicas lock rows in one order.
            limits.append(self._upstream)
        return limits

    async def _tokens(self, tenant: str, state: _Tenant) -> None:
        if not self._limits(tenant):
            return
        waiting = asyncio.get_running_loop().create_future()
        state.for_tokens.append(waiting)
        if state.refill is None:
            state.refill = asyncio.create_task(self._refill(tenant, state))
        await waiting

    async def _refill(self, tenant: str, state: _Tenant) -> None:
        """Takes tokens for the tenant's waiting attempts until none waits."""
        limits = self._limits(tenant)
        try:
            while wanted := min(CHUNK, _waiting(state.for_tokens)):
                take = functools.partial(self._take, state, limits, wanted)
                granted = await until_done("take upstream tokens", take)
                _wake(state.for_tokens, granted)
                if granted < wanted:
                    await asyncio.sleep(state.next_token_in)
        except Exception as error:
            log.exception("taking upstream tokens for %s failed", tenant)
            while state.for_tokens:
                waiter = state.for_tokens.popleft()
                if not waiter.done():
                    waiter.set_exception(error)
        finally:
            state.refill = None

    async def _take(self, state: _Tenant, limits: list[Limit], wanted: int) -> int:
        """Takes up to `wanted` tokens of every limit in one transaction; how many.
        Short of them, `state.next_token_in` says when the short bucket has another."""
        state.next_token_in = 0.0
        async with self.database.write() as connection:
            granted, taken = wanted, []
            for limit in limits:
                grant = await rate_buckets.take(
                    connection, limit.bucket, granted, limit.rate, limit.burst
                )
                if grant is None:  # the first take of this bucket in the fleet
                    await rate_buckets.ensure_bucket(connection, limit.bucket, limit.burst)
                    grant = await rate_buckets.take(
                        connection, limit.bucket, granted, limit.rate, limit.burst
                    )
                    assert grant is not None, "the bucket was just made"
                if grant.granted < granted:
                    wait = (1 - grant.left) / limit.rate
                    state.next_token_in = max(state.next_token_in, wait)
                granted = grant.granted
                taken.append((limit, granted))
                if granted == 0:
                    break
            # What the tenant's bucket gave beyond what the upstream's would match.
            for limit, got in taken:
                if got > granted:
                    await rate_buckets.give_back(
                        connection, limit.bucket, got - granted, limit.burst
                    )
        return granted


def _now() -> float:
    # Also read by the metrics thread, where there is no event loop.
    return time.monotonic()


async def _queued(queue: deque[asyncio.Future[None]]) -> None:
    waiter = asyncio.get_running_loop().create_future()
    queue.append(waiter)
    try:
        await waiter
    finally:
        with contextlib.suppress(ValueError):
            queue.remove(waiter)


def _waiting(queue: deque[asyncio.Future[None]]) -> int:
    while queue and queue[0].done():
        queue.popleft()
    return sum(1 for waiter in queue if not waiter.done())


def _wake(queue: deque[asyncio.Future[None]], count: int) -> None:
    """Lets the first `count` live waiters of the queue go."""
    while count > 0 and queue:
        waiter = queue.popleft()
        if not waiter.done():
            waiter.set_result(None)
            count -= 1
