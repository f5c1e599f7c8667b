"""Sends one operation to the upstream, with retries, and describes its result."""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from yarl import URL

from batchd.json_values import (
    MAX_DOUBLE_INTEGER,
    decode_json_bytes,
    load_json,
    storable_document,
)
from batchd.logs import REQUEST_ID_HEADER
from service.bulk import JsonText
from service.claims import IDEMPOTENT_METHODS, Claim, Result
from service.engine.deadlines import Deadlines
from service.engine.throttle import Throttle
from service.engine.urls import Upstream
from service.models import OperationStatus

RETRY_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0
PREVIEW_CHARACTERS = 4096
# A number written with a 4-digit exponent or a 1,000-digit run may parse to a
# plain double (1e-20000 is 0.0) yet overflow PostgreSQL's JSONB, which keeps
# the decimal as written (at most 16,383 digits after the point): such text is
# stored as the parsed value. A digit run inside a string only costs the same.
# In JSON an exponent follows a digit: leading with the digit lets the search
# skip letters, half its time on a typical body (it runs on every response).
_UNWIELDY_NUMBER = re.compile(r"[0-9](?:[eE][-+]?[0-9]{4}|[0-9]{999})")
USER_AGENT = "batchd/0.1"
_DELAY_SECONDS = re.compile(r"[0-9]+")
MAX_HEADER_CHARACTERS = 200


@dataclass(frozen=True)
class _Response:
    status: int
    body: Any
    retry_after: float | None


class _Failure(Exception):
    def __init__(self, reason: str, never_sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.never_sent = never_sent


class _SendOnce:
    """Lets one attempt reach the upstream once. aiohttp silently sends an
    idempotent request again when its connection closes before the answer, so
    an upstream that drops connections saw each attempt twice; refused here,
    the failure goes back to the retry loop, which counts it as an attempt."""

    def __init__(self) -> None:
        self.sent = False

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if self.sent:
            raise aiohttp.ServerDisconnectedError()
        self.sent = True
        return await handler(request)


class Executor:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        upstream: Upstream,
        timeout: float,
        max_retries: int,
        max_response_bytes: int,
        throttle: Throttle,
    ) -> None:
        self.session = session
        self.throttle = throttle
        self.upstream = upstream
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_response_bytes = max_response_bytes
        self.deadlines = Deadlines()

    async def execute(
        self,
        claim: Claim,
        authorization: str | None,
        correlation_id: str | None,
        first_admitted_at: float,
    ) -> Result:
        """Runs the operation, whose first send the throttle admitted at `first_admitted_at`.

        Held back before the first send, an operation has not started: its budget
        starts once it is admitted. Retries wait within the budget."""
        admitted_at: float | None = first_admitted_at
        attempts = 0
        deadline = time.monotonic() + self.timeout
        idempotent = claim.http_method in IDEMPOTENT_METHODS
        try:
            # The same request on every attempt.
            url = self.upstream.url_for(claim.path, claim.query_params)
            headers = _headers(claim.idempotency_key or claim.id, authorization, correlation_id)
        except BaseException:
            self.throttle.finished(claim.tenant, first_admitted_at, None, None)
            raise
        try:
            with self.deadlines.bound(self.timeout):
                while True:
                    attempts += 1
                    if admitted_at is None:
                        admitted_at = await self.throttle.admit(claim.tenant)
                    sending, admitted_at = admitted_at, None
                    try:
                        response = await self._send_admitted(
                            claim.tenant, sending, claim.http_method, url, claim.body, headers
                        )
                    except _Failure as failure:
                        retryable = idempotent or failure.never_sent
                        delay = self._retry_delay(attempts, None, deadline) if retryable else None
                        if delay is None:
                            return Result(
                                claim,
                                OperationStatus.FAILED,
                                failure_reason=failure.reason,
                                attempts=attempts,
                            )
                    else:
                        # A 429 means the upstream did not act: any method may repeat
                        # it (with the same Idempotency-Key).
                        retryable = response.status in RETRY_STATUSES and (
                            idempotent or response.status == 429
                        )
                        delay = (
                            self._retry_delay(attempts, response.retry_after, deadline)
                            if retryable
                            else None
                        )
                        if delay is None:
                            return Result(
                                claim,
                                OperationStatus.COMPLETED,
                                response.status,
                                response.body,
                                attempts=attempts,
                            )
                    await asyncio.sleep(delay)
        except TimeoutError:
            return Result(
                claim,
                OperationStatus.TIMED_OUT,
                failure_reason="deadline_exceeded",
                attempts=attempts,
            )

    def _retry_delay(
        self, attempts: int, retry_after: float | None, deadline: float
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to stop retrying."""
        if attempts > self.max_retries:
            return None
        delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempts - 1)))
        if retry_after is not None:
            delay = max(delay, retry_after)
        if time.monotonic() + delay >= deadline:
            return None
        return delay

    async def _send_admitted(
        self,
        tenant: str,
        admitted_at: float,
        method: str,
        url: URL,
        body: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> _Response:
        """One admitted attempt; the throttle hears how it went."""
        status = retry_after = None
        try:
            response = await self._send(method, url, body, headers)
            status, retry_after = response.status, response.retry_after
            return response
        finally:
            self.throttle.finished(tenant, admitted_at, status, retry_after)

    async def _send(
        self, method: str, url: URL, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> _Response:
        try:
            async with self.session.request(
                method,
                url,
                json=body,
                headers=headers,
                allow_redirects=False,
                middlewares=(_SendOnce(),),
            ) as response:
                raw, size = await self._read_bounded(response)
                return _Response(
                    response.status,
                    self._stored_body(raw, size, response),
                    _retry_after(response.headers.get("Retry-After")),
                )
        except aiohttp.ClientConnectorError as error:
            refused = isinstance(error.os_error, ConnectionRefusedError)
            reason = "connection_refused" if refused else _connector_reason(error)
            raise _Failure(reason, never_sent=True) from None
        except aiohttp.ServerDisconnectedError:
            raise _Failure("server_disconnected", never_sent=False) from None
        except aiohttp.ClientPayloadError:
            raise _Failure("response_cut_off", never_sent=False) from None
        except aiohttp.ClientResponseError:
            # A status line or headers no HTTP parser reads (a duplicated Content-Length).
            raise _Failure("invalid_response", never_sent=False) from None
        except aiohttp.ClientError:
            raise _Failure("connection_error", never_sent=False) from None

    async def _read_bounded(self, response: aiohttp.ClientResponse) -> tuple[bytes, int]:
        """Up to max_response_bytes of the body, and the body's whole size."""
        chunks: list[bytes] = []
        kept = size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if kept < self.max_response_bytes:
                chunks.append(chunk[: self.max_response_bytes - kept])
                kept += len(chunks[-1])
        return b"".join(chunks), size

    def _stored_body(self, raw: bytes, size: int, response: aiohttp.ClientResponse) -> Any:
        """Parsed JSON; None for an empty body; else a bounded description (only
        then is the Content-Type parsed: it costs a header parse per response)."""
        if size == 0:
            return None
        if size <= self.max_response_bytes:
            try:
                text, encoding = decode_json_bytes(raw)
                parsed = load_json(text, max_integer=MAX_DOUBLE_INTEGER)
            except (ValueError, RecursionError):
                kind = "non_json"
            else:
                if storable_document(raw, parsed):
                    return _as_stored(text, encoding, parsed)
                kind = "unstorable_json"
        else:
            kind = "too_large"
        return {
            "batchd_unparsed_body": kind,
            "content_type": _printable(response.content_type),
            "size_bytes": size,
            "preview": _preview(raw),
        }


def _headers(
    idempotency_key: str, authorization: str | None, correlation_id: str | None
) -> dict[str, str]:
    headers = {
        "Idempotency-Key": idempotency_key,
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    if authorization:
        headers["Authorization"] = authorization
    if correlation_id:
        headers[REQUEST_ID_HEADER] = correlation_id
    return headers


def _as_stored(text: str, encoding: str, parsed: Any) -> Any:
    """The upstream's own text when it came as plain UTF-8, which every database
    takes as it is; else the parsed value, serialised again when stored. (Its
    readers would refuse a UTF-8 BOM, which detection names "utf-8-sig".)"""
    if parsed is None:
        return None  # SQL NULL, as for an empty body
    if encoding != "utf-8" or _UNWIELDY_NUMBER.search(text):
        return parsed
    return JsonText(text)


def _preview(raw: bytes) -> str:
    text = raw[:PREVIEW_CHARACTERS].decode("utf-8", errors="replace")
    return text.replace("\x00", "\ufffd")


def _connector_reason(error: aiohttp.ClientConnectorError) -> str:
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "dns_failure"
    if isinstance(error, aiohttp.ClientConnectorCertificateError | aiohttp.ClientConnectorSSLError):
        return "tls_error"
    return "connection_error"


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, from either its seconds or its HTTP-date form;
    None for anything else. Total: an upstream's header must never lose the
    response it came with. Seconds are ASCII digits only (str.isdigit takes
    '²', which float() refuses); a run too long for a float reads as forever."""
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _printable(header: str) -> str:
    """A header value as visible ASCII, bounded: it is stored and shown as it is,
    and an upstream may send any bytes (undecodable ones arrive as surrogates)."""
    return "".join(c if " " <= c <= "~" else "?" for c in header[:MAX_HEADER_CHARACTERS])
