"""The engine's webhook sender: claims due deliveries, POSTs them signed, settles them.

Each attempt is signed as the Standard Webhooks specification says, with the
`standardwebhooks` reference library: `webhook-id` is the event's id on every
attempt (receivers dedupe on it), `webhook-timestamp` the attempt's time. A
2xx delivers; anything else (another status, a redirect, which is never
followed, a timeout, a connection error, a refused address) is retried with
backoff (webhook_outbox.py) until BATCH_WEBHOOK_MAX_ATTEMPTS. The receiver's
answer is read up to a few hundred bytes, for the delivery's last error only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from datetime import UTC, datetime

import aiohttp
from standardwebhooks.webhooks import Webhook
from yarl import URL

from service import metrics, webhook_outbox
from service.credentials import Sealer
from service.database import Database
from service.engine.retrying import until_done
from service.engine.webhook_addresses import AddressRefused, PublicAddressResolver, check_literal
from service.settings import ServiceSettings
from service.waiting import POLL_SECONDS
from service.webhook_outbox import Destination, DueDelivery, Outcome, Room

log = logging.getLogger(__name__)
# Attempts this process makes at once; a slow receiver holds one slot.
MAX_CONCURRENT_ATTEMPTS = 32
# A tenant's share of them: receivers that never answer hold no more than this.
MAX_ATTEMPTS_PER_TENANT = 8
# A lease outlives an attempt by this much, so that only a dead sender loses it.
LEASE_MARGIN_SECONDS = 10.0
ANSWER_PREVIEW_BYTES = 200
USER_AGENT = "batchd-webhooks/0.1"
# Settled deliveries are kept this long for ListWebhookDeliveries.
HISTORY_SECONDS = 7 * 86400.0
PURGE_EVERY_SECONDS = 3600.0
# How long a stop waits for attempts under way (BATCH_SHUTDOWN_GRACE bounds the rest).
STOP_WAIT_SECONDS = 2.0


class WebhookSender:
    def __init__(
        self, database: Database, settings: ServiceSettings, sealer: Sealer, owner: str
    ) -> None:
        self.database = database
        self.settings = settings
        self.sealer = sealer
        self.owner = owner
        # Each attempt under way, and the tenant it is for.
        self._running: dict[asyncio.Task[None], str] = {}
        self._claimed: list[tuple[DueDelivery, Destination | None]] = []
        self._next_purge = 0.0

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=None if self.settings.webhook_allow_private else PublicAddressResolver(),
            # Cached answers would skip the check's resolver on later connections.
            use_dns_cache=False,
            limit=MAX_CONCURRENT_ATTEMPTS,
            limit_per_host=4,
        )
        timeout = aiohttp.ClientTimeout(total=self.settings.webhook_timeout)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers={"User-Agent": USER_AGENT}
        ) as session:
            try:
                await self._send_due(session)
            finally:
                await self._let_attempts_finish()

    async def _let_attempts_finish(self) -> None:
        """At a stop, attempts under way get a moment to finish and be settled, so a
        restart does not send them again; the rest are cut off, and their leases
        expire for another sender (or this one, restarted) to go on."""
        if self._running:
            await asyncio.wait(self._running, timeout=STOP_WAIT_SECONDS)
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _send_due(self, session: aiohttp.ClientSession) -> None:
        while True:
            await self._purge_history()
            room = MAX_CONCURRENT_ATTEMPTS - len(self._running)
            claimed = await until_done("claim webhook deliveries", self._claim)
            for delivery, destination in self._claimed:
                task = asyncio.create_task(self._attempt(session, delivery, destination))
                self._running[task] = delivery.tenant
            if room and claimed == room:
                continue  # more may be due
            if not self._running:
                await asyncio.sleep(POLL_SECONDS)
                continue
            done, _ = await asyncio.wait(
                self._running, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                del self._running[task]
                task.result()  # an attempt that raised is a bug: the engine stops

    async def _claim(self) -> int:
        """Claims what is due, up to the room left; how many."""
        self._claimed = []
        room = MAX_CONCURRENT_ATTEMPTS - len(self._running)
        if room <= 0:
            return 0
        async with self.database.read() as reading:
            if not await webhook_outbox.any_due(reading):
                return 0
        lease = self.settings.webhook_timeout + LEASE_MARGIN_SECONDS
        shares = Room(room, MAX_ATTEMPTS_PER_TENANT, Counter(self._running.values()))
        async with self.database.write() as connection:
            due, destinations = await webhook_outbox.claim_due(
                connection, self.owner, shares, lease
            )
        self._claimed = [(delivery, destinations.get(delivery.endpoint_id)) for delivery in due]
        return len(due)

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        delivery: DueDelivery,
        destination: Destination | None,
    ) -> None:
        if destination is None:
            return  # its endpoint was deleted, and the delivery with it
        secret = self.sealer.unseal(destination.sealed_secret)
        if secret is None:
            outcome = Outcome(False, "secret_unavailable", None, "signing_secret_unavailable", True)
        else:
            outcome = await _post(
                session,
                destination.url,
                delivery,
                Webhook(secret),
                public_only=not self.settings.webhook_allow_private,
            )
        metrics.webhook_attempted(outcome.label)
        if not outcome.delivered:
            log.info("webhook %s attempt %d: %s", delivery.id, delivery.attempts, outcome.error)

        async def settle() -> None:
            async with self.database.write() as connection:
                await webhook_outbox.settle(
                    connection,
                    self.owner,
                    delivery,
                    outcome,
                    self.settings.webhook_max_attempts,
                    self.settings.webhook_retry_base,
                )

        await until_done("settle webhook delivery", settle)

    async def _purge_history(self) -> None:
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_EVERY_SECONDS

        async def purge() -> int:
            async with self.database.write() as connection:
                return await webhook_outbox.purge_settled(connection, time.time() - HISTORY_SECONDS)

        await until_done("purge webhook deliveries", purge)


async def _post(
    session: aiohttp.ClientSession,
    raw_url: str,
    delivery: DueDelivery,
    signer: Webhook,
    public_only: bool,
) -> Outcome:
    """One attempt: its outcome, whatever went wrong. `public_only`: an IP literal
    must be public (a host name's addresses are the resolver's to check)."""
    now = datetime.now(UTC)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": delivery.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(delivery.event_id, now, delivery.payload),
    }
    try:
        url = URL(raw_url, encoded=True)
        if public_only and url.host is not None:
            check_literal(url.host)
        async with session.post(
            url, data=delivery.payload.encode(), headers=headers, allow_redirects=False
        ) as response:
            preview = await response.content.read(ANSWER_PREVIEW_BYTES)
    except AddressRefused as refused:
        return Outcome(False, "address_refused", error=str(refused))
    except TimeoutError:
        return Outcome(False, "timeout", error="timeout: no answer in time")
    except aiohttp.ClientConnectorDNSError as error:
        if isinstance(error.os_error, AddressRefused):
            return Outcome(False, "address_refused", error=str(error.os_error))
        return Outcome(False, "dns_error", error=f"dns_error: {error.os_error}")
    except (aiohttp.ClientError, ValueError, OSError) as error:
        return Outcome(False, "connection_error", error=f"connection_error: {error!r}")
    status = response.status
    if 200 <= status < 300:
        return Outcome(True, "delivered", status)
    shown = preview.decode(errors="replace")
    if 300 <= status < 400:
        shown = "redirects are not followed"
    return Outcome(False, f"status_{status // 100}xx", status, f"HTTP {status}: {shown}")
