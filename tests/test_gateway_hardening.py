"""The gateway against hostile HTTP: malformed framing, credentials in odd bytes, slow
clients, dropped event streams and a stop with streams open. All against a real
`batchd` process over raw sockets, reading what it writes to its log."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests.grpcurl import grpcurl
from tests.processes import API_TOKENS, Process, batchd_env, start_batchd
from tests.rest import AUTH, ERROR_KEYS, create_batch
from tests.upstream import running_upstream

# A live token that only these tests use, so finding it in a log can only be a leak.
SECRET = "s3cr3t-live-token-7f9q2w"
SECRET_AUTH = {"Authorization": f"Bearer {SECRET}"}
KEEPALIVE_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
SHUTDOWN_GRACE = 5.0
# Far more than any of these stops needs, far less than the 60 s an open stream held one.
STOP_BOUND = SHUTDOWN_GRACE + 5


@dataclass
class Stack:
    process: Process
    base_url: str
    grpc_target: str

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.base_url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)


def hardening_env(tmp_path: Path, upstream_url: str) -> dict[str, str]:
    return batchd_env(
        tmp_path,
        BATCH_UPSTREAM_URL=upstream_url,
        BATCH_API_TOKENS=f"{API_TOKENS},{SECRET}:tenant-secret",
        # Every level: no log line at all may carry a credential.
        BATCH_LOG_LEVEL="DEBUG",
        BATCH_HTTP_KEEPALIVE_TIMEOUT=str(KEEPALIVE_TIMEOUT),
        BATCH_HTTP_BODY_TIMEOUT=str(BODY_TIMEOUT),
        BATCH_SHUTDOWN_GRACE=str(SHUTDOWN_GRACE),
    )


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp("hardening")
    async with running_upstream() as (upstream_url, _):
        env = hardening_env(directory, upstream_url)
        process, base_url = await start_batchd(env, directory)
        yield Stack(process, base_url, env["BATCH_GRPC_ADDRESS"])
        await process.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)


async def send_raw(stack: Stack, data: bytes, timeout: float = 10) -> Answer:
    """One raw request on its own connection; the answer, read until the server closes."""
    reader, writer = await asyncio.open_connection(*stack.host_port)
    try:
        writer.write(data)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return parse_answer(response)


def parse_answer(response: bytes) -> Answer:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return Answer(int(status_line.split()[1]), headers, body)


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        length = int(size, 16)
        out, body = out + rest[:length], rest[length + 2 :]
        if not length:
            break
    return out


def request(head: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [head, "Host: gateway", *headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


GZIP_JUNK = request(
    "POST /v1/batches HTTP/1.1",
    "Content-Type: application/json",
    "Content-Encoding: gzip",
    "Content-Length: 10",
    body=b"0123456789",
)
# 11 MiB of zeros in about 11 KB: more than BATCH_MAX_BODY_BYTES once decompressed.
GZIP_BOMB = gzip.compress(b"0" * (11 * 1024 * 1024))
FRAMING_ERRORS = {
    "bad chunk size": (
        request(
            "POST /v1/batches HTTP/1.1", "Transfer-Encoding: chunked", body=b"zz\r\n{}\r\n0\r\n\r\n"
        ),
        400,
    ),
    "duplicate content-length": (
        request("POST /v1/batches HTTP/1.1", "Content-Length: 2", "Content-Length: 3", body=b"{}"),
        400,
    ),
    "content-length and chunked": (
        request(
            "POST /v1/batches HTTP/1.1",
            "Content-Length: 5",
            "Transfer-Encoding: chunked",
            body=b"0\r\n\r\n",
        ),
        400,
    ),
    "non-numeric content-length": (
        request("POST /v1/batches HTTP/1.1", "Content-Length: 1e3", body=b"{}"),
        400,
    ),
    "200 headers": (request("GET /v1/batches HTTP/1.1", *(f"X-H{n}: v" for n in range(200))), 431),
    "a header over 8 KiB": (request("GET /v1/batches HTTP/1.1", "X-Big: " + "b" * 9000), 431),
    "a header name over 8 KiB": (request("GET /v1/batches HTTP/1.1", "X" * 9000 + ": v"), 431),
    "a url over 8 KiB": (request("GET /v1/batches?q=" + "u" * 9000 + " HTTP/1.1"), 414),
    "an unknown method": (request("FROB /v1/batches HTTP/1.1"), 501),
    "a method with a separator": (request("G(T /v1/batches HTTP/1.1"), 501),
    "a control character in a header": (request("GET /v1/batches HTTP/1.1", "X-C: a\x01b"), 400),
    "a header without a colon": (request("GET /v1/batches HTTP/1.1", "NoColonHere"), 400),
    "a space before the colon": (request("GET /v1/batches HTTP/1.1", "X-S : v"), 400),
    "an unknown http version": (request("GET /v1/batches HTTP/9.9"), 400),
    "tls on the http port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),
    "garbage gzip body": (GZIP_JUNK, 400),
    "a gzip body over the limit once decompressed": (
        request(
            "POST /v1/batches HTTP/1.1",
            "Content-Type: application/json",
            "Content-Encoding: gzip",
            f"Content-Length: {len(GZIP_BOMB)}",
            body=GZIP_BOMB,
        ),
        413,
    ),
}


@pytest.mark.parametrize("data, status", FRAMING_ERRORS.values(), ids=FRAMING_ERRORS)
async def test_malformed_requests_get_the_contracts_error_json(
    stack: Stack, data: bytes, status: int
) -> None:
    answer = await send_raw(stack, data)
    assert answer.status == status, answer
    body = answer.json()
    assert set(body) == ERROR_KEYS, body
    assert body["validation_errors"] == []
    # The answer never quotes the request's bytes back.
    assert "\\x" not in body["message"] and "^" not in body["message"], body


async def test_a_body_whose_chunking_breaks_midway_is_a_400(stack: Stack) -> None:
    reader, writer = await asyncio.open_connection(*stack.host_port)
    head = request(
        "POST /v1/batches HTTP/1.1",
        f"Authorization: Bearer {SECRET}",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
    )
    writer.write(head + b'2\r\n{"\r\n')
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.write(b"zz\r\n")
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    answer = parse_answer(response)
    assert answer.status == 400, answer
    assert answer.json()["code"] == "bad_request"


def assert_no_secret(text: str | bytes) -> None:
    raw = text.encode() if isinstance(text, str) else text
    for piece in (SECRET, SECRET[:12], SECRET[-12:]):
        assert piece.encode() not in raw, f"{piece!r} leaked"


def header_bytes(value: bytes) -> bytes:
    return (
        b"GET /v1/batches HTTP/1.1\r\nHost: gateway\r\nAuthorization: "
        + value
        + b"\r\nConnection: close\r\n\r\n"
    )


SECRET_BYTES = SECRET.encode()
# Authorization values that hold the live token next to bytes no token has.
ODD_AUTHORIZATIONS = {
    "control character": b"Bearer " + SECRET_BYTES + b"\x01",
    "nul": b"Bearer " + SECRET_BYTES + b"\x00x",
    "delete": b"Bearer " + SECRET_BYTES + b"\x7f",
    "escape": b"Bearer \x1b[31m" + SECRET_BYTES,
    "over 8 KiB": b"Bearer " + SECRET_BYTES + b"A" * 9000,
    "latin-1 no-break space": b"Bearer " + SECRET_BYTES + b"\xa0",
    "utf-8 no-break space": b"Bearer " + SECRET_BYTES + b"\xc2\xa0",
    "utf-8 ideographic space": b"Bearer \xe3\x80\x80" + SECRET_BYTES,
    "two spaces": b"Bearer  " + SECRET_BYTES,
    "a tab for the space": b"Bearer\t" + SECRET_BYTES,
    "a vertical tab": b"Bearer " + SECRET_BYTES + b"\x0b",
    "a form feed": b"Bearer " + SECRET_BYTES + b"\x0c",
    "a space inside": b"Bearer " + SECRET_BYTES + b" x",
    "invalid utf-8": b"Bearer " + SECRET_BYTES + b"\xff\xfe",
    "a no-break space inside": b"Bearer " + SECRET_BYTES + b"\xa0x",
}


@pytest.mark.parametrize("value", ODD_AUTHORIZATIONS.values(), ids=ODD_AUTHORIZATIONS)
async def test_odd_bytes_beside_a_token_are_refused_and_never_logged_or_echoed(
    stack: Stack, value: bytes
) -> None:
    since = stack.process.log_path.stat().st_size
    answer = await send_raw(stack, header_bytes(value))
    assert_no_secret(answer.body)
    assert answer.status in (400, 401, 431), answer
    assert set(answer.json()) == ERROR_KEYS
    await asyncio.sleep(0.1)
    assert_no_secret(stack.process.log_path.read_bytes()[since:])


async def test_the_plain_token_still_authenticates(stack: Stack) -> None:
    answer = await send_raw(stack, header_bytes(b"Bearer " + SECRET_BYTES))
    assert answer.status == 200, answer
    assert answer.json()["object"] == "list"


# grpcurl trims Unicode spaces around a -H value itself, but sends these bytes as they are.
GRPCURL_AUTHORIZATIONS = {
    name: ODD_AUTHORIZATIONS[name]
    for name in ("latin-1 no-break space", "two spaces", "a tab for the space", "invalid utf-8")
}


@pytest.mark.parametrize("value", GRPCURL_AUTHORIZATIONS.values(), ids=GRPCURL_AUTHORIZATIONS)
async def test_grpc_refuses_odd_bytes_beside_a_token_and_never_logs_them(
    stack: Stack, value: bytes
) -> None:
    since = stack.process.log_path.stat().st_size
    header = b"authorization: " + value
    code, out, err = await grpcurl(
        "-H",
        header.decode("utf-8", "surrogateescape"),
        stack.grpc_target,
        "batchd.v1.BatchService/ListBatches",
    )
    await asyncio.sleep(0.1)
    assert_no_secret(stack.process.log_path.read_bytes()[since:])
    assert code != 0, out
    assert "Unauthenticated" in err, err


@pytest.mark.parametrize(
    "value", [f"Bearer {SECRET} ", f" Bearer {SECRET}", f"Bearer  {SECRET}", f"Bearer {SECRET}x"]
)
async def test_grpc_refuses_a_token_with_spaces_around_it(stack: Stack, value: str) -> None:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        stub = batch_pb2_grpc.BatchServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListBatches(
                batch_pb2.ListBatchesRequest(), metadata=(("authorization", value),), timeout=10
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_grpc_accepts_the_plain_token(stack: Stack) -> None:
    code, _, err = await grpcurl(
        "-H",
        f"authorization: Bearer {SECRET}",
        stack.grpc_target,
        "batchd.v1.BatchService/ListBatches",
    )
    assert code == 0, err


async def test_a_client_sending_headers_slowly_is_cut_off_while_others_are_served(
    stack: Stack,
) -> None:
    reader, writer = await asyncio.open_connection(*stack.host_port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n")
    started = time.monotonic()
    closed_after = None
    async with aiohttp.ClientSession(base_url=stack.base_url) as http:
        # One header byte every 0.2 s, forever; another client is served meanwhile.
        while time.monotonic() - started < KEEPALIVE_TIMEOUT + 5:
            try:
                writer.write(b"X")
                await writer.drain()
            except ConnectionError:
                pass
            async with http.get("/healthz") as response:
                assert response.status == 200
            try:
                if await asyncio.wait_for(reader.read(), 0.2) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except ConnectionError:
                closed_after = time.monotonic() - started
                break
    writer.close()
    assert closed_after is not None, "a slow client kept its connection"


BODY_PATHS = [
    "/v1/batches",
    "/v1/batches/00000000-0000-7000-8000-000000000000/retry",
    "/v1/webhook_endpoints",
]


@pytest.mark.parametrize("path", BODY_PATHS)
async def test_a_client_sending_a_body_slowly_gets_a_408_and_its_connection_closed(
    stack: Stack, path: str
) -> None:
    """A byte of body every 0.2 s, so the connection is never idle: the whole body's
    time is counted, and the answer is the contract's error."""
    reader, writer = await asyncio.open_connection(*stack.host_port)
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: gateway",
        f"Authorization: {AUTH['Authorization']}",
        "Content-Type: application/json",
        "Content-Length: 1000",
        "",
        "{",
    ]
    head = "\r\n".join(lines)
    writer.write(head.encode())
    received = b""
    started = time.monotonic()
    try:
        while time.monotonic() - started < BODY_TIMEOUT + 5:
            with contextlib.suppress(ConnectionError):
                writer.write(b" ")
                await writer.drain()
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 0.2)
            except TimeoutError:
                continue
            if not chunk:
                break
            received += chunk
    finally:
        writer.close()
    answer = parse_answer(received)
    assert answer.status == 408, answer
    assert answer.json() == {
        "http_status": "request_timeout",
        "type": "request_timeout",
        "code": "request_timeout",
        "message": f"The request body did not arrive within {BODY_TIMEOUT:g} s",
        "validation_errors": [],
    }
    assert answer.headers.get("connection") == "close"


async def test_an_idle_connection_is_closed(stack: Stack) -> None:
    reader, writer = await asyncio.open_connection(*stack.host_port)
    try:
        assert await asyncio.wait_for(reader.read(), KEEPALIVE_TIMEOUT + 5) == b""
    finally:
        writer.close()


async def open_stream(http: aiohttp.ClientSession, batch_id: str) -> aiohttp.ClientResponse:
    """An event stream whose first event was read."""
    response = await http.get(f"/v1/batches/{batch_id}/events")
    assert response.status == 200, await response.text()
    assert await response.content.readuntil(b"\n\n") == b"retry: 2000\n\n"
    assert (await response.content.readuntil(b"\n\n")).startswith(f"id: {batch_id}/".encode())
    return response


def problems(process: Process, since: int) -> list[str]:
    """Log lines past `since` bytes that report an error or carry a traceback."""
    text = process.log_path.read_bytes()[since:].decode(errors="replace")
    return [
        line
        for line in text.splitlines()
        if '"level": "ERROR"' in line
        or '"level": "CRITICAL"' in line
        or "Traceback" in line
        or "ValueError" in line
    ]


async def test_dropping_event_streams_logs_no_error(stack: Stack) -> None:
    since = stack.process.log_path.stat().st_size
    async with aiohttp.ClientSession(base_url=stack.base_url, headers=AUTH) as http:
        for delay in range(6):
            # Dropped while the service is busy sending events, and while it is idle.
            busy = [{"http_method": "GET", "path": f"/echo/{n}"} for n in range(300)]
            response = await open_stream(http, (await create_batch(http, busy))["id"])
            await asyncio.sleep(0.01 * delay)
            response.close()
            idle = await create_batch(http, [{"http_method": "GET", "path": "/slow/30"}])
            (await open_stream(http, idle["id"])).close()
        # A generator left behind is closed when collected, which more requests bring on.
        for _ in range(20):
            async with http.get("/v1/batches") as answer:
                assert answer.status == 200
    await asyncio.sleep(2)
    assert problems(stack.process, since) == []


async def test_sigterm_with_open_event_streams_stops_within_the_grace(tmp_path: Path) -> None:
    async with running_upstream() as (upstream_url, _):
        process, base_url = await start_batchd(hardening_env(tmp_path, upstream_url), tmp_path)
        assert process.process is not None
        async with aiohttp.ClientSession(base_url=base_url, headers=AUTH) as http:
            batch = await create_batch(http, [{"http_method": "GET", "path": "/slow/60"}])
            streams = [await open_stream(http, batch["id"]) for _ in range(3)]
            started = time.monotonic()
            process.process.send_signal(signal.SIGTERM)
            # Each stream ends at once, saying why, rather than hanging until the kill.
            for stream in streams:
                rest = await asyncio.wait_for(stream.content.read(), STOP_BOUND)
                # Its id is the first event's: a reconnect resumes from there.
                assert rest.startswith(f"id: {batch['id']}/pending\nevent: error\n".encode()) or (
                    rest.startswith(f"id: {batch['id']}/in_progress\nevent: error\n".encode())
                ), rest
                assert json.loads(rest.split(b"data: ", 1)[1])["code"] == "service_unavailable"
            code = await asyncio.wait_for(process.process.wait(), STOP_BOUND)
            stopped_after = time.monotonic() - started
        await process.stop()
    assert code == 0, process.log()
    assert stopped_after < STOP_BOUND, process.log()
    print(f"stopped {stopped_after:.2f} s after SIGTERM")
    assert problems(process, 0) == [], process.log()
