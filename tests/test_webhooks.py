"""Webhooks end to end: a real batchd process, a real receiver on loopback, real restarts.

Receivers on loopback need BATCH_WEBHOOK_ALLOW_PRIVATE=1, except in the test that
shows they are refused without it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import standardwebhooks

from tests.processes import Process, batchd_env, start_batchd
from tests.rest import AUTH, OTHER_AUTH, call, create_batch, wait_completed
from tests.upstream import UpstreamLog
from tests.webhook_receiver import Received, Receiver, receiving

ENDPOINT_KEYS = {"id", "object", "url", "webhook_events", "created_at", "updated_at"}
EVENT_KEYS = {"id", "object", "type", "created_at", "data"}
FAST_RETRIES = {"BATCH_WEBHOOK_RETRY_BASE": "0.2", "BATCH_WEBHOOK_TIMEOUT": "2"}
ALLOW_LOOPBACK = {"BATCH_WEBHOOK_ALLOW_PRIVATE": "1", **FAST_RETRIES}
# How long a test watches for attempts that must not come.
QUIET_SECONDS = 1.5


@asynccontextmanager
async def running_batchd(
    tmp_path: Path, database_url: str, upstream_url: str, **env: str
) -> AsyncIterator[tuple[Process, aiohttp.ClientSession]]:
    overrides = {"BATCH_DATABASE_URL": database_url, "BATCH_UPSTREAM_URL": upstream_url, **env}
    tmp_path.mkdir(exist_ok=True)
    process, base_url = await start_batchd(batchd_env(tmp_path, **overrides), tmp_path)
    try:
        async with aiohttp.ClientSession(base_url=base_url, headers=AUTH) as http:
            yield process, http
    finally:
        await process.stop()


async def create_endpoint(
    http: aiohttp.ClientSession, url: str, events: list[str], **kwargs: Any
) -> dict[str, Any]:
    document = {"webhook_endpoint": {"url": url, "webhook_events": events}}
    created: dict[str, Any] = await call(
        http, "POST", "/v1/webhook_endpoints", 200, json=document, **kwargs
    )
    return created


async def finished_batch(
    http: aiohttp.ClientSession, status: str = "completed", cancel: bool = False
) -> dict[str, Any]:
    """A batch run to its end, as GET returns it then with its outcome counts, which an
    event always carries (`expand[]=outcome_counts`)."""
    if cancel:
        operations = [{"http_method": "GET", "path": "/slow/0.5"} for _ in range(3)]
        document = {
            "batch": {"batch_operations": operations, "execution_options": {"sequential": True}}
        }
        created = await call(http, "POST", "/v1/batches", 200, json=document)
        await call(http, "POST", f"/v1/batches/{created['id']}/cancel", 200)
    else:
        created = await create_batch(http, [{"http_method": "GET", "path": "/echo/a"}] * 2)
    await wait_completed(http, created["id"], status=status, expand=False)
    counted: dict[str, Any] = await call(
        http, "GET", f"/v1/batches/{created['id']}?expand[]=outcome_counts", 200
    )
    return counted


async def deliveries_of(http: aiohttp.ClientSession, endpoint_id: str) -> list[dict[str, Any]]:
    listed = await call(http, "GET", f"/v1/webhook_endpoints/{endpoint_id}/deliveries", 200)
    data: list[dict[str, Any]] = listed["data"]
    return data


async def wait_delivery(
    http: aiohttp.ClientSession, endpoint_id: str, until: Any, timeout: float = 30
) -> dict[str, Any]:
    """The endpoint's only delivery, once `until(delivery)` holds."""
    async with asyncio.timeout(timeout):
        while True:
            found = await deliveries_of(http, endpoint_id)
            assert len(found) <= 1, found
            if found and until(found[0]):
                return found[0]
            await asyncio.sleep(0.1)


def verified(secret: str, request: Received) -> Any:
    """The event, verified by the Standard Webhooks reference library (which svix's
    verifier wraps), and by the specification's own words, computed here."""
    event = standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    headers = request.headers
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + request.body
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert f"v1,{expected}" in headers["webhook-signature"].split(" ")
    return event


async def test_a_finished_batch_sends_one_signed_event_holding_the_batch_as_get_shows_it(
    tmp_path: Path, database_url: str, upstream_server: tuple[str, UpstreamLog]
) -> None:
    receiver, other_tenants = Receiver(), Receiver()
    async with (
        receiving(receiver),
        receiving(other_tenants),
        running_batchd(tmp_path, database_url, upstream_server[0], **ALLOW_LOOPBACK) as (_, http),
    ):
        endpoint = await create_endpoint(http, receiver.url, ["batch.completed"])
        await create_endpoint(http, other_tenants.url, ["batch.completed"], headers=OTHER_AUTH)
        assert set(endpoint) == ENDPOINT_KEYS | {"signing_secret"}
        assert endpoint["signing_secret"].startswith("whsec_")
        batch = await finished_batch(http)
        [request] = await receiver.wait_for(1)
        event = verified(endpoint["signing_secret"], request)
        assert set(event) == EVENT_KEYS
        assert event["object"] == "event"
        assert event["type"] == "batch.completed"
        assert request.headers["webhook-id"] == event["id"]
        assert event["data"] == {"object": batch}
        shown = await call(http, "GET", f"/v1/batches/{batch['id']}?expand[]=outcome_counts", 200)
        assert event["data"]["object"] == shown
        assert shown["outcome_counts"]["responses_2xx"] == 2
        await asyncio.sleep(QUIET_SECONDS)
        assert len(receiver.received) == 1
        assert other_tenants.received == []
        [delivery] = await deliveries_of(http, endpoint["id"])
        assert delivery["status"] == "delivered"
        assert delivery["attempts"] == 1
        assert delivery["event"] == event["id"]
        assert delivery["batch"] == batch["id"]
        assert delivery["last_response_status"] == 200


async def test_an_event_answered_500_twice_arrives_on_the_third_attempt_under_one_id(
    tmp_path: Path, database_url: str, upstream_server: tuple[str, UpstreamLog]
) -> None:
    receiver = Receiver(statuses=[500, 500])
    async with (
        receiving(receiver),
        running_batchd(tmp_path, database_url, upstream_server[0], **ALLOW_LOOPBACK) as (_, http),
    ):
        endpoint = await create_endpoint(http, receiver.url, ["batch.completed", "batch.canceled"])
        await finished_batch(http)
        attempts = await receiver.wait_for(3)
        assert len({attempt.headers["webhook-id"] for attempt in attempts}) == 1
        assert len({attempt.body for attempt in attempts}) == 1
        for attempt in attempts:
            verified(endpoint["signing_secret"], attempt)
        await asyncio.sleep(QUIET_SECONDS)
        assert len(receiver.received) == 3
        [delivery] = await deliveries_of(http, endpoint["id"])
        assert (delivery["status"], delivery["attempts"]) == ("delivered", 3)


async def test_an_unanswered_attempt_times_out_and_is_retried(
    tmp_path: Path, upstream_server: tuple[str, UpstreamLog]
) -> None:
    receiver = Receiver(delays=[3])
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}"
    env = {**ALLOW_LOOPBACK, "BATCH_WEBHOOK_TIMEOUT": "0.5"}
    async with (
        receiving(receiver),
        running_batchd(tmp_path, database_url, upstream_server[0], **env) as (_, http),
    ):
        endpoint = await create_endpoint(http, receiver.url, ["batch.completed"])
        await finished_batch(http)
        first, second = await receiver.wait_for(2)
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        delivered = await wait_delivery(http, endpoint["id"], lambda d: d["status"] == "delivered")
        assert delivered["attempts"] == 2


async def test_an_event_is_given_up_after_the_attempts_allowed(
    tmp_path: Path, upstream_server: tuple[str, UpstreamLog]
) -> None:
    receiver = Receiver(statuses=[503] * 100)
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}"
    env = {**ALLOW_LOOPBACK, "BATCH_WEBHOOK_MAX_ATTEMPTS": "2"}
    async with (
        receiving(receiver),
        running_batchd(tmp_path, database_url, upstream_server[0], **env) as (_, http),
    ):
        endpoint = await create_endpoint(http, receiver.url, ["batch.completed"])
        await finished_batch(http)
        failed = await wait_delivery(http, endpoint["id"], lambda d: d["status"] == "failed")
        assert failed["attempts"] == 2
        assert failed["last_response_status"] == 503
        assert failed["last_error"] == 'HTTP 503: {"answered": 503}'
        assert failed["next_attempt_at"] is None
        await asyncio.sleep(QUIET_SECONDS)
        assert len(receiver.received) == 2


async def test_an_event_outlives_a_sigkill_while_its_receiver_is_down(
    tmp_path: Path, database_url: str, upstream_server: tuple[str, UpstreamLog]
) -> None:
    receiver = Receiver()  # not listening yet: every attempt is refused
    async with running_batchd(tmp_path, database_url, upstream_server[0], **ALLOW_LOOPBACK) as (
        process,
        http,
    ):
        endpoint = await create_endpoint(http, receiver.url, ["batch.completed"])
        batch = await finished_batch(http)
        failed = await wait_delivery(
            http, endpoint["id"], lambda d: d["attempts"] >= 1 and d["last_error"]
        )
        assert failed["status"] == "pending"
        assert failed["last_error"].startswith("connection_error"), failed
        assert await process.stop(signal.SIGKILL) == -signal.SIGKILL
    async with (
        receiving(receiver),
        running_batchd(tmp_path, database_url, upstream_server[0], **ALLOW_LOOPBACK) as (_, http),
    ):
        [request] = await receiver.wait_for(1)
        event = verified(endpoint["signing_secret"], request)
        assert event["data"]["object"] == batch
        delivered = await wait_delivery(http, endpoint["id"], lambda d: d["status"] == "delivered")
        await asyncio.sleep(QUIET_SECONDS)
        assert len(receiver.received) == 1
        assert (await deliveries_of(http, endpoint["id"])) == [delivered]


async def test_a_stop_lets_an_attempt_under_way_finish_so_a_restart_sends_nothing_again(
    tmp_path: Path, database_url: str, upstream_server: tuple[str, UpstreamLog]
) -> None:
    receiver = Receiver(delays=[1])
    async with receiving(receiver):
        async with running_batchd(tmp_path, database_url, upstream_server[0], **ALLOW_LOOPBACK) as (
            process,
            http,
        ):
            endpoint = await create_endpoint(http, receiver.url, ["batch.completed"])
            await finished_batch(http)
            await receiver.wait_for(1)
            assert await process.stop(signal.SIGTERM) == 0
        async with running_batchd(tmp_path, database_url, upstream_server[0], **ALLOW_LOOPBACK) as (
            _,
            http,
        ):
            [delivery] = await deliveries_of(http, endpoint["id"])
            assert (delivery["status"], delivery["attempts"]) == ("delivered", 1)
            await asyncio.sleep(QUIET_SECONDS)
            assert len(receiver.received) == 1


async def test_a_canceled_batch_sends_batch_canceled_only_where_subscribed(
    tmp_path: Path, database_url: str, upstream_server: tuple[str, UpstreamLog]
) -> None:
    completions, cancels = Receiver(), Receiver()
    async with (
        receiving(completions),
        receiving(cancels),
        running_batchd(tmp_path, database_url, upstream_server[0], **ALLOW_LOOPBACK) as (_, http),
    ):
        await create_endpoint(http, completions.url, ["batch.completed"])
        endpoint = await create_endpoint(http, cancels.url, ["batch.canceled"])
        batch = await finished_batch(http, status="canceled", cancel=True)
        [request] = await cancels.wait_for(1)
        event = verified(endpoint["signing_secret"], request)
        assert event["type"] == "batch.canceled"
        assert event["data"]["object"] == batch
        assert batch["status"] == "canceled"
        await asyncio.sleep(QUIET_SECONDS)
        assert completions.received == []
        assert len(cancels.received) == 1


async def test_without_allow_private_a_loopback_endpoint_gets_nothing_and_says_why(
    tmp_path: Path, upstream_server: tuple[str, UpstreamLog]
) -> None:
    receiver = Receiver()
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}"
    async with (
        receiving(receiver),
        running_batchd(tmp_path, database_url, upstream_server[0], **FAST_RETRIES) as (_, http),
    ):
        by_address = await create_endpoint(http, receiver.url, ["batch.completed"])
        by_name = await create_endpoint(
            http, f"http://localhost:{receiver.port}/hooks", ["batch.completed"]
        )
        mapped = await create_endpoint(
            http, f"http://[::ffff:127.0.0.1]:{receiver.port}/hooks", ["batch.completed"]
        )
        await finished_batch(http)
        for endpoint in (by_address, by_name, mapped):
            delivery = await wait_delivery(http, endpoint["id"], lambda d: d["last_error"])
            assert delivery["last_error"].startswith("address_refused"), delivery
            assert "127.0.0.1" in delivery["last_error"] or "::1" in delivery["last_error"]
            assert delivery["last_response_status"] is None
        async with http.get("/metrics") as response:
            assert (
                'batchd_webhook_attempts_total{outcome="address_refused"}' in await response.text()
            )
        await asyncio.sleep(QUIET_SECONDS)
        assert receiver.received == []


async def test_a_redirect_from_a_receiver_is_not_followed(
    tmp_path: Path, upstream_server: tuple[str, UpstreamLog]
) -> None:
    target = Receiver()
    redirecting = Receiver(redirect_to=target.url)
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}"
    async with (
        receiving(target),
        receiving(redirecting),
        running_batchd(tmp_path, database_url, upstream_server[0], **ALLOW_LOOPBACK) as (_, http),
    ):
        endpoint = await create_endpoint(http, redirecting.url, ["batch.completed"])
        await finished_batch(http)
        delivery = await wait_delivery(http, endpoint["id"], lambda d: d["last_response_status"])
        assert delivery["last_response_status"] == 302
        assert delivery["status"] == "pending"
        assert "redirects are not followed" in delivery["last_error"]
        assert redirecting.received
        await asyncio.sleep(QUIET_SECONDS)
        assert target.received == []


async def test_deleting_an_endpoint_stops_its_waiting_deliveries(
    tmp_path: Path, upstream_server: tuple[str, UpstreamLog]
) -> None:
    receiver = Receiver(statuses=[500] * 100)
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}"
    async with (
        receiving(receiver),
        running_batchd(tmp_path, database_url, upstream_server[0], **ALLOW_LOOPBACK) as (_, http),
    ):
        endpoint = await create_endpoint(http, receiver.url, ["batch.completed"])
        await finished_batch(http)
        await receiver.wait_for(1)
        await call(http, "DELETE", f"/v1/webhook_endpoints/{endpoint['id']}", 200)
        # An attempt under way when it was deleted may still arrive; none after it.
        await asyncio.sleep(QUIET_SECONDS)
        seen = len(receiver.received)
        await asyncio.sleep(QUIET_SECONDS)
        assert len(receiver.received) == seen


async def test_two_replicas_post_each_event_once(
    tmp_path: Path, postgres_url: str, upstream_server: tuple[str, UpstreamLog]
) -> None:
    """Both replicas finish batches and both send webhooks; each event arrives once."""
    receiver = Receiver()
    async with (
        receiving(receiver),
        running_batchd(tmp_path / "a", postgres_url, upstream_server[0], **ALLOW_LOOPBACK) as (
            _,
            first,
        ),
        running_batchd(tmp_path / "b", postgres_url, upstream_server[0], **ALLOW_LOOPBACK) as (
            _,
            second,
        ),
    ):
        endpoint = await create_endpoint(first, receiver.url, ["batch.completed"])
        batches = await asyncio.gather(*(finished_batch(http) for http in [first, second] * 5))
        requests = await receiver.wait_for(len(batches))
        await asyncio.sleep(QUIET_SECONDS)
        assert len(receiver.received) == len(batches)
        events = [verified(endpoint["signing_secret"], request) for request in requests]
        assert sorted(event["data"]["object"]["id"] for event in events) == sorted(
            batch["id"] for batch in batches
        )


async def test_creates_at_once_on_two_replicas_stop_at_the_tenants_limit(
    tmp_path: Path, postgres_url: str, upstream_server: tuple[str, UpstreamLog]
) -> None:
    document = {
        "webhook_endpoint": {"url": "https://x.example/h", "webhook_events": ["batch.completed"]}
    }
    async with (
        running_batchd(tmp_path / "a", postgres_url, upstream_server[0]) as (_, first),
        running_batchd(tmp_path / "b", postgres_url, upstream_server[0]) as (_, second),
    ):

        async def create(http: aiohttp.ClientSession) -> int:
            async with http.post("/v1/webhook_endpoints", json=document) as response:
                return response.status

        statuses = await asyncio.gather(*(create(http) for http in [first, second] * 12))
        assert sorted(statuses) == [200] * 16 + [422] * 8
        listed = await call(first, "GET", "/v1/webhook_endpoints", 200)
        assert listed["pagination"]["count"] == 16


async def test_a_tenant_whose_receiver_never_answers_holds_only_its_share_of_the_sender(
    tmp_path: Path, upstream_server: tuple[str, UpstreamLog]
) -> None:
    """Tenant A's 40 events to a receiver that answers nothing before the attempts time
    out are more than the sender's 32 slots: tenant B's event still goes out at once.
    Claimed by due time alone, A's attempts held every slot for the whole timeout."""
    silent = Receiver(delays=[120.0] * 100)
    answering = Receiver()
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}"
    env = {**ALLOW_LOOPBACK, "BATCH_WEBHOOK_TIMEOUT": "60"}
    async with (
        receiving(silent),
        receiving(answering),
        running_batchd(tmp_path, database_url, upstream_server[0], **env) as (_, http),
    ):
        await create_endpoint(http, silent.url, ["batch.completed"])
        await create_endpoint(http, answering.url, ["batch.completed"], headers=OTHER_AUTH)
        # All of A's events are due before B's: each is written as its batch ends.
        for _ in range(40):
            created = await create_batch(http, [{"http_method": "GET", "path": "/echo/a"}])
            await wait_completed(http, created["id"], expand=False)
        await silent.wait_for(1)
        created = await create_batch(
            http, [{"http_method": "GET", "path": "/echo/b"}], headers=OTHER_AUTH
        )
        [event] = await answering.wait_for(1, timeout=30)
        assert event.event["data"]["object"]["id"] == created["id"]
        assert all(received.event["type"] == "batch.completed" for received in silent.received)
