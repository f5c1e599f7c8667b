"""A real upstream REST API for tests, with a log of every request it saw.

Routes answer fast, slowly, with chosen statuses, 429/503 with Retry-After,
non-JSON, huge bodies, a cut-off connection, and redirects.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    query_string: str
    headers: CIMultiDict[str]
    body: Any
    # When it arrived (time.monotonic), and how many requests were being answered then.
    at: float = field(default_factory=time.monotonic)
    in_flight: int = 0


@dataclass(frozen=True)
class Span:
    """When the upstream began and finished answering one request (monotonic seconds)."""

    path: str
    idempotency_key: str
    start: float
    end: float
    # The status it was answered with; None when no answer was made (the handler failed).
    status: int | None = None


@dataclass
class UpstreamLog:
    requests: list[SeenRequest] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    # Requests being answered right now, and the most there ever were at once.
    in_flight: int = 0
    max_in_flight: int = 0
    # The longest this process's event loop was kept from running (seconds beyond
    # STALL_TICK): requests that came meanwhile are stamped that much late, together.
    longest_stall: float = 0.0

    def by_idempotency_key(self) -> Counter[str]:
        return Counter(r.headers.get("Idempotency-Key", "") for r in self.requests)


LOG_KEY = web.AppKey("log", UpstreamLog)
HITS_KEY = web.AppKey("hits", Counter)
# Per group of /limited: when the requests it accepted in the last second arrived.
ACCEPTED_KEY = web.AppKey("accepted", dict[str, deque[float]])


@web.middleware
async def record(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    raw = await request.read()
    body = json.loads(raw) if raw else None
    log = request.app[LOG_KEY]
    log.in_flight += 1
    log.requests.append(
        SeenRequest(
            request.method,
            request.path,
            request.query_string,
            CIMultiDict(request.headers),
            body,
            in_flight=log.in_flight,
        )
    )
    log.max_in_flight = max(log.max_in_flight, log.in_flight)
    start = time.monotonic()
    status = None
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        log.in_flight -= 1
        key = request.headers.get("Idempotency-Key", "")
        log.spans.append(Span(request.path, key, start, time.monotonic(), status))


async def echo(request: web.Request) -> web.Response:
    raw = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "body": json.loads(raw) if raw else None,
        }
    )


async def status(request: web.Request) -> web.Response:
    return web.json_response(
        {"status": int(request.match_info["code"])}, status=int(request.match_info["code"])
    )


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.match_info["seconds"]))
    return web.json_response({"slept": float(request.match_info["seconds"])})


async def flaky(request: web.Request) -> web.Response:
    """Answers `code` the first `times` calls per key, then 200 (or `?then=`)."""
    key = request.match_info["key"]
    hits = request.app[HITS_KEY]
    hits[key] += 1
    if hits[key] <= int(request.match_info["times"]):
        code = int(request.match_info["code"])
        headers = {"Retry-After": request.query.get("retry_after", "0")}
        return web.json_response({"error": "try again"}, status=code, headers=headers)
    then = int(request.query.get("then", "200"))
    return web.json_response({"ok": True, "calls": hits[key]}, status=then)


async def limited(request: web.Request) -> web.Response:
    """Accepts `per_second` requests of the group in any second, measured here;
    beyond that answers 429 with Retry-After: 1, as a rate-limited API does."""
    accepted = request.app[ACCEPTED_KEY].setdefault(request.match_info["group"], deque())
    now = time.monotonic()
    while accepted and accepted[0] <= now - 1:
        accepted.popleft()
    if len(accepted) >= int(request.match_info["per_second"]):
        return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "1"})
    accepted.append(now)
    return web.json_response({"ok": True})


async def refusing_first(request: web.Request) -> web.Response:
    """Answers the group's first `refusals` requests 429 (no Retry-After), the
    rest 200, each after 50 ms: concurrency shows in the log's in-flight counts."""
    hits = request.app[HITS_KEY]
    group = request.match_info["group"]
    hits[group] += 1
    refused = hits[group] <= int(request.match_info["refusals"])
    await asyncio.sleep(0.05)
    if refused:
        return web.json_response({"error": "busy"}, status=429)
    return web.json_response({"ok": True})


async def text(_: web.Request) -> web.Response:
    return web.Response(text="<html>not json</html>", content_type="text/html")


def huge_operations(count: int) -> list[dict[str, Any]]:
    """Operations whose stored responses are about 0.9 MiB each, numbered by `n`."""
    return [
        {"http_method": "GET", "path": "/huge", "query_params": {"bytes": 900_000, "n": n}}
        for n in range(count)
    ]


async def huge(request: web.Request) -> web.Response:
    size = int(request.query.get("bytes", str(5 * 1024 * 1024)))
    return web.json_response({"data": "x" * size})


async def zeros(request: web.Request) -> web.Response:
    """`[0,0,...]` of `bytes` bytes: JSON that grows the most as a protobuf Value."""
    count = (int(request.query["bytes"]) - 1) // 2
    return web.Response(text="[" + ",".join("0" * count) + "]", content_type="application/json")


async def raw_json(request: web.Request) -> web.Response:
    """JSON that parses but that no database or protobuf should be asked to hold."""
    bodies = {
        "nul": '{"text": "a\\u0000b"}',
        "deep": "[" * 60 + "]" * 60,
        "nan": '{"value": NaN}',
        "surrogate": '{"text": "\\ud800"}',
        # Not UTF-8 at all, but Python's own json.loads decodes it (surrogatepass).
        "surrogate_bytes": '{"text": "\ud800"}',
        "huge_number": '{"value": 1e400, "whole": 1' + "0" * 400 + "}",
    }
    body = bodies[request.match_info["kind"]].encode("utf-8", "surrogatepass")
    return web.Response(body=body, content_type="application/json")


# Every kind of JSON value, the empty ones included: a body must read back as written.
JSON_BODIES = {
    "empty_object": "{}",
    "empty_array": "[]",
    "zero": "0",
    "false": "false",
    "empty_string": '""',
    "null": "null",
    "nested_empties": '{"a": {}, "b": [], "c": [{}, []]}',
}


async def json_body(request: web.Request) -> web.Response:
    return web.Response(
        text=JSON_BODIES[request.match_info["kind"]], content_type="application/json"
    )


async def numbers(request: web.Request) -> web.Response:
    """Numbers that parse to ordinary doubles but are written so that PostgreSQL's
    JSONB (exact decimals, at most 16,383 digits after the point) cannot hold them."""
    written = {
        "tiny": "1e-20000",
        "long_fraction": "0." + "0" * 20_000 + "1",
        "null": "null",
        "uint64": "12345678901234567890",
    }[request.match_info["kind"]]
    text = written if written == "null" else '{"x": ' + written + "}"
    return web.Response(text=text, content_type="application/json")


async def encoded(request: web.Request) -> web.Response:
    """The same document in each encoding JSON may come in, spaced as a person would."""
    text = '{ "name" : "caf\u00e9",\n  "sizes": [ 1, 2.5 ] }'
    # ASCII only, so that UTF-16 and 32 without a BOM would also pass as UTF-8.
    escaped = '{ "name" : "caf\\u00e9",\n  "sizes": [ 1, 2.5 ] }'
    raw = {
        "utf8": text.encode(),
        "utf8_bom": codecs.BOM_UTF8 + text.encode(),
        "utf16": text.encode("utf-16"),
        "utf16le": escaped.encode("utf-16-le"),
        "utf32le": escaped.encode("utf-32-le"),
    }[request.match_info["encoding"]]
    return web.Response(body=raw, content_type="application/json")


async def empty(_: web.Request) -> web.Response:
    return web.Response(status=204)


async def cut_off(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Length": "1000", "Content-Type": "application/json"}
    )
    await response.prepare(request)
    await response.write(b'{"partial": ')
    assert request.transport is not None
    request.transport.close()
    return response


async def cookie(_: web.Request) -> web.Response:
    response = web.json_response({"cookie": "set"})
    response.set_cookie("session", "meant-for-one-caller", path="/")
    return response


async def redirect(_: web.Request) -> web.Response:
    raise web.HTTPFound("http://198.51.100.7/stolen")


def make_app() -> web.Application:
    # batchd sends request bodies of up to 16 MiB (its gRPC message limit).
    app = web.Application(middlewares=[record], client_max_size=32 * 1024 * 1024)
    app[LOG_KEY] = UpstreamLog()
    app[HITS_KEY] = Counter()
    app[ACCEPTED_KEY] = {}
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/slow/{seconds}/{tail:.*}", slow)
    app.router.add_route("*", "/slow/{seconds}", slow)
    app.router.add_route("*", "/flaky/{key}/{times}/{code}", flaky)
    app.router.add_route("*", "/limited/{group}/{per_second}/{tail:.*}", limited)
    app.router.add_route("*", "/refusing/{group}/{refusals}/{tail:.*}", refusing_first)
    app.router.add_route("*", "/text", text)
    app.router.add_route("*", "/huge", huge)
    app.router.add_route("*", "/zeros", zeros)
    app.router.add_route("*", "/empty", empty)
    app.router.add_route("*", "/raw/{kind}", raw_json)
    app.router.add_route("*", "/cutoff", cut_off)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_route("*", "/cookie", cookie)
    app.router.add_route("*", "/encoded/{encoding}", encoded)
    app.router.add_route("*", "/numbers/{kind}", numbers)
    app.router.add_route("*", "/json/{kind}", json_body)
    return app


STALL_TICK = 0.02


async def watch_stalls(log: UpstreamLog) -> None:
    """Measures how late this process's loop wakes up, for as long as it runs: on a
    loaded machine the upstream itself may be kept waiting, and then the requests
    sent meanwhile arrive at once, whatever pace they were sent at."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(STALL_TICK)
        log.longest_stall = max(log.longest_stall, time.monotonic() - before - STALL_TICK)


@asynccontextmanager
async def running_upstream() -> AsyncIterator[tuple[str, UpstreamLog]]:
    app = make_app()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stalls = asyncio.create_task(watch_stalls(app[LOG_KEY]))
    try:
        yield f"http://127.0.0.1:{port}", app[LOG_KEY]
    finally:
        stalls.cancel()
        with suppress(asyncio.CancelledError):
            await stalls
        await runner.cleanup()
