"""What reaches the upstream is exactly what was accepted, and what comes back is kept.

One service and gateway in front of a hand-written upstream (tests/raw_upstream.py)
under the path prefix /api/v2: paths that some server would read outside the
prefix are refused; numbers arrive as written, in bodies and query strings;
hostile response headers never lose a response; and an operation reaches the
upstream at most 1 + BATCH_MAX_RETRIES times even when connections drop.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import aiohttp
import grpc
import pytest

from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests.grpc_client import GET, POST, operation, run_batch
from tests.processes import gateway_env, service_env, start_gateway, start_service
from tests.raw_upstream import RawLog, RawRequest, json_response, raw_upstream, response
from tests.rest import AUTH, assert_error, attributes, call, create_batch, wait_completed

PREFIX = "/api/v2"
MAX_RETRIES = 3

# Response headers an upstream may send, each a class of hostile values.
HOSTILE: dict[str, list[tuple[bytes, bytes]]] = {
    "superscript_digit": [(b"Retry-After", "²".encode())],
    "arabic_digit": [(b"Retry-After", "٣".encode())],
    "fullwidth_digit": [(b"Retry-After", "\uff15".encode())],
    "huge": [(b"Retry-After", b"1" + b"0" * 400)],
    "beyond_int_digits": [(b"Retry-After", b"9" * 5000)],
    "negative": [(b"Retry-After", b"-1")],
    "float": [(b"Retry-After", b"1.5")],
    "exponent": [(b"Retry-After", b"1e3")],
    "bad_date": [(b"Retry-After", b"Mon, 99 Foo 2020 25:61:61 GMT")],
    "year_overflow": [(b"Retry-After", b"1 Jan 10000000000 00:00:00")],
    "not_utf8": [(b"Retry-After", b"\xff\xfe")],
    "empty": [(b"Retry-After", b"")],
    "duplicated": [(b"Retry-After", b"0"), (b"Retry-After", "²".encode())],
    "unknown_charset": [(b"Content-Type", b"application/json; charset=klingon")],
    "wrong_charset": [(b"Content-Type", b"application/json; charset=utf-16")],
    "garbage_type": [(b"Content-Type", b"\xff/\xfe; ;;==; charset")],
    "two_types": [(b"Content-Type", b"text/html"), (b"Content-Type", b"application/json")],
}
# Headers that break the message's framing: no response can be read from them.
FRAMING: dict[str, list[tuple[bytes, bytes]]] = {
    "length_twice": [(b"Content-Length", b"LENGTH"), (b"Content-Length", b"LENGTH")],
    "length_superscript": [(b"Content-Length", "²".encode())],
    "length_negative": [(b"Content-Length", b"-1")],
    "length_huge": [(b"Content-Length", b"1" + b"0" * 400)],
}


def _hostile(name: str, status: int) -> bytes:
    body = json.dumps({"hostile": name}).encode()
    headers = HOSTILE.get(name) or FRAMING[name]
    extra = [(n, v.replace(b"LENGTH", str(len(body)).encode())) for n, v in headers]
    named = {n.lower() for n, _ in extra}
    defaults = [(b"Content-Type", b"application/json"), (b"Content-Length", b"%d" % len(body))]
    kept = [h for h in defaults if h[0].lower() not in named]
    return response(status, body, [*kept, *extra, CLOSE])


CLOSE = (b"Connection", b"close")


def answer(request: RawRequest) -> bytes | None:
    """/api/v2/hostile/<name>/<status>; /api/v2/drop/... (never answered);
    /api/v2/drop-once/<key> (answered from the second time on);
    /api/v2/quiet-close/... (a 503, closed without saying so); else a 200.
    Every other answer says that it closes the connection, so that no request
    meets a connection closed under it by chance."""
    parts = request.target.split("?")[0].split("/")[3:]
    if parts[0] == "hostile":
        return _hostile(parts[1], int(parts[2]))
    if parts[0] == "not-json":
        content_type = b"\xff\xfe/" + "\u00b2".encode() + b"; charset=\x80"
        return response(
            200, b"<html>", [(b"Content-Type", content_type), (b"Content-Length", b"6"), CLOSE]
        )
    if parts[0] == "drop":
        return None
    if parts[0] == "drop-once" and _DROPPED.setdefault(parts[1], 0) == 0:
        _DROPPED[parts[1]] += 1
        return None
    if parts[0] == "quiet-close":
        return json_response(503, b'{"busy": true}')
    return json_response(200, b'{"ok": true}', CLOSE)


_DROPPED: dict[str, int] = {}


@dataclass(frozen=True)
class Stack:
    base_url: str
    grpc_target: str
    log: RawLog


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    directory = tmp_path_factory.mktemp("exactness")
    async with raw_upstream(answer) as (upstream_url, log):
        env = service_env(
            f"sqlite+aiosqlite:///{directory / 'batchd.db'}",
            upstream_url + PREFIX,
            BATCH_MAX_RETRIES=str(MAX_RETRIES),
            # Hostile Retry-After values on 503s would otherwise pause the tenant's
            # later tests too: the pause is the throttle's business, tested on its own.
            BATCH_MAX_UPSTREAM_PAUSE="0.2",
        )
        service = await start_service(env, directory / "service.log")
        gateway, base_url = await start_gateway(
            gateway_env(env["BATCH_GRPC_ADDRESS"]), directory / "gateway.log"
        )
        yield Stack(base_url, env["BATCH_GRPC_ADDRESS"], log)
        await gateway.stop()
        await service.stop()


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=stack.base_url, headers=AUTH) as session:
        yield session


async def run(
    http: aiohttp.ClientSession, operations: list[dict[str, Any]], timeout: float = 30
) -> list[Any]:
    """The batch's operations once it completes, in the order given."""
    batch = await create_batch(http, operations)
    await wait_completed(http, batch["id"], timeout, expand=False)
    listed = await call(
        http, "GET", f"/v1/batch_operations?batch_ids[]={batch['id']}&limit=100", 200
    )
    by_request = {(op["http_method"], op["path"]): op for op in listed["data"]}
    return [by_request[(op["http_method"], op["path"])] for op in operations]


async def refused(http: aiohttp.ClientSession, operations: list[dict[str, Any]]) -> list[str]:
    """The attributes a create of these operations is refused for (a 422)."""
    document = {"batch": {"batch_operations": operations}}
    body = await call(http, "POST", "/v1/batches", 422, json=document)
    assert_error(body, "unprocessable_entity")
    return attributes(body)


# Paths each some common server reads outside the prefix, a few per class.
ESCAPING_PATHS = [
    "/..;/admin",
    "/x/..;a=b/..;/admin",
    "/..%3b/admin",
    "/%252e%252e/admin",
    "/%25252e%25252e/admin",
    "/%252E./admin",
    "/%c0%ae%c0%ae/admin",
    "/%e0%80%ae%e0%80%ae/admin",
    "/%25c0%25ae%25c0%25ae/admin",
    "/%ef%bc%8e%ef%bc%8e/admin",
    "/x%ef%bc%8f%ef%bc%8e%ef%bc%8e%ef%bc%8f%ef%bc%8e%ef%bc%8e/admin",
    "/%ef%bc%bcadmin",
    "/%e2%80%a5/admin",
    "/a%252f..",
]
KEPT_PATHS = ["/ids/123", "/a%20b", "/caf%C3%A9", "/%E6%97%A5%E6%9C%AC", "/x;v=2/y", "/100%25"]


async def test_a_path_a_server_would_read_outside_the_prefix_is_refused(
    http: aiohttp.ClientSession,
) -> None:
    operations = [{"http_method": "GET", "path": path} for path in ESCAPING_PATHS]
    assert await refused(http, operations) == [
        f"batch_operations[{index}].path" for index in range(len(ESCAPING_PATHS))
    ]


async def test_paths_with_escapes_and_unicode_go_under_the_prefix_as_written(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    done = await run(http, [{"http_method": "GET", "path": path} for path in KEPT_PATHS])
    assert [op["status"] for op in done] == ["completed"] * len(KEPT_PATHS)
    targets = {r.target for r in stack.log.requests}
    assert {PREFIX + path for path in KEPT_PATHS} <= targets


@pytest.mark.parametrize("status", [200, 503])
async def test_no_response_header_loses_the_response(
    http: aiohttp.ClientSession, stack: Stack, status: int
) -> None:
    operations = [
        {"http_method": method, "path": f"/hostile/{name}/{status}"}
        for name in HOSTILE
        for method in ("GET", "POST")
    ]
    done = await run(http, operations)
    for sent, recorded in zip(operations, done, strict=True):
        name = sent["path"].split("/")[2]
        assert recorded["status"] == "completed", (sent, recorded)
        assert recorded["response_status"] == status, (sent, recorded)
        assert recorded["response_body"] == {"hostile": name}, (sent, recorded)


async def test_a_non_json_answer_with_undecodable_content_type_is_kept(
    http: aiohttp.ClientSession,
) -> None:
    # Stored as it came, it would carry any bytes into every reader's JSON.
    (recorded,) = await run(http, [{"http_method": "POST", "path": "/not-json"}])
    assert recorded["status"] == "completed"
    assert recorded["response_status"] == 200
    assert recorded["response_body"]["batchd_unparsed_body"] == "non_json"
    assert recorded["response_body"]["preview"] == "<html>"
    assert recorded["response_body"]["content_type"].isascii()


async def test_a_response_with_broken_framing_is_a_failure_with_its_reason(
    stack: Stack,
) -> None:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        stub = batch_pb2_grpc.BatchServiceStub(channel)
        batch = await run_batch(
            stub,
            [
                operation(method, f"/hostile/{name}/200")
                for name in FRAMING
                for method in (GET, POST)
            ],
        )
    for recorded in batch.batch_operations:
        assert recorded.status == batch_pb2.BATCH_OPERATION_STATUS_FAILED, recorded
        assert recorded.failure_reason == "invalid_response", recorded


async def test_a_dropped_connection_costs_one_attempt_of_the_retries(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    # aiohttp sends an idempotent request again, silently, when its connection
    # closes unanswered: each of our attempts reached the upstream twice.
    operations = [
        {"http_method": method, "path": f"/drop/{method.lower()}"}
        for method in ("GET", "PUT", "DELETE", "POST")
    ] + [{"http_method": "GET", "path": "/drop-once/get"}]
    done = await run(http, operations)
    seen = Counter(r.target.removeprefix(PREFIX) for r in stack.log.requests)
    for method in ("get", "put", "delete"):
        assert seen[f"/drop/{method}"] == 1 + MAX_RETRIES
    assert seen["/drop/post"] == 1  # never sent twice
    assert [op["status"] for op in done[:4]] == ["failed"] * 4
    assert done[4]["status"] == "completed" and done[4]["response_status"] == 200
    assert seen["/drop-once/get"] == 2


async def test_connections_closed_after_each_answer_cost_no_extra_requests(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    # Concurrent operations reuse connections the upstream is closing: a request
    # sent on one never arrives, and the next attempt counts as one. Every answer is
    # a 503, which teaches the tenant's throttle to slow down to about one attempt a
    # second (MIN_RATE): the batch takes about as many seconds as it makes attempts.
    paths = [f"/quiet-close/{n}" for n in range(5)]
    operations = [{"http_method": "GET", "path": path} for path in paths]
    done = await run(http, operations, timeout=30 + len(paths) * (1 + MAX_RETRIES))
    seen = Counter(r.target.removeprefix(PREFIX) for r in stack.log.requests)
    for path, recorded in zip(paths, done, strict=True):
        assert 1 <= seen[path] <= 1 + MAX_RETRIES
        assert recorded["status"] in ("completed", "failed")
        assert recorded["status"] == "failed" or recorded["response_status"] == 503


# Numbers that reach the upstream as written, and numbers a double cannot carry.
EXACT_NUMBERS = [
    "5",
    "5.0",
    "-0",
    "0.1",
    "-2.5e-7",
    "1e21",
    "9007199254740991",
    "9007199254740992",
    "-9007199254740992",
    "9223372036854775808",
    "18446744073709551616",
]
INEXACT_NUMBERS = [
    "9007199254740993",
    "-9007199254740993",
    "9223372036854775807",
    "12345678901234567890",
    "1e23",
    "1.5e300",
    "1e400",
    "-1e400",
    "1" + "0" * 400,
]


def _number_operations(numbers: list[str]) -> bytes:
    operations = ",".join(
        f'{{"http_method": "{method}", "path": "/numbers/{method}/{index}",'
        f' "body": {{"order": {{"id": {text}}}}}, "query_params": {{"n": {text}}}}}'
        for index, text in enumerate(numbers)
        for method in ("POST", "PUT")
    )
    return f'{{"batch": {{"batch_operations": [{operations}]}}}}'.encode()


def assert_written_as(received: str, written: str) -> None:
    assert Decimal(received) == Decimal(written), (received, written)
    if re.fullmatch(r"-?[0-9]+", written):
        assert received == str(int(written)), (received, written)


async def test_numbers_reach_the_upstream_as_written_in_bodies_and_queries(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    raw = _number_operations(EXACT_NUMBERS)
    created = await call(http, "POST", "/v1/batches", 200, data=raw)
    await wait_completed(http, created["id"], expand=False)
    for index, written in enumerate(EXACT_NUMBERS):
        for method in ("POST", "PUT"):
            (seen,) = stack.log.to(f"{PREFIX}/numbers/{method}/{index}?")
            body = json.loads(seen.body, parse_int=str, parse_float=str)
            assert_written_as(body["order"]["id"], written)
            assert_written_as(unquote(seen.target.split("?n=", 1)[1]), written)


async def test_a_number_a_double_cannot_carry_is_refused_by_name(
    http: aiohttp.ClientSession,
) -> None:
    async with http.post("/v1/batches", data=_number_operations(INEXACT_NUMBERS)) as reply:
        assert reply.status == 422
        body = await reply.json()
    assert_error(body, "unprocessable_entity")
    assert attributes(body) == [
        f"batch_operations[{index}].{name}"
        for index in range(2 * len(INEXACT_NUMBERS))
        for name in ("body.order.id", "query_params.n")
    ]


async def test_integral_doubles_from_a_grpc_client_arrive_as_integers(
    stack: Stack,
) -> None:
    # A Struct holds doubles: a gRPC client cannot send 2**53 + 1 at all, but
    # every integral double it sends is an exact integer and must arrive as one.
    values = {"big": float(2**60), "five": 5.0, "huge": 1e300, "half": 0.5}
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        stub = batch_pb2_grpc.BatchServiceStub(channel)
        batch = await run_batch(
            stub,
            [
                operation(POST, "/grpc-numbers/body", body=values),
                operation(GET, "/grpc-numbers/query", query_params=values),
            ],
        )
    assert all(
        op.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED for op in batch.batch_operations
    )
    (posted,) = stack.log.to(f"{PREFIX}/grpc-numbers/body")
    (queried,) = stack.log.to(f"{PREFIX}/grpc-numbers/query")
    expected = {"big": str(2**60), "five": "5", "huge": str(int(1e300)), "half": "0.5"}
    assert json.loads(posted.body, parse_int=str, parse_float=str) == expected
    assert queried.target.split("?", 1)[1] == "&".join(
        f"{key}={expected[key]}" for key in sorted(expected)
    )
