"""An upstream that speaks HTTP/1.1 by hand, for what aiohttp's server would not send.

It logs each request's exact bytes (target and body), answers with whatever
bytes a test chooses (any header, duplicated, non-ASCII), or drops the
connection without an answer. It closes every connection after its answer
without saying so (no `Connection: close`), as a server with a short
keep-alive does: the client finds out when it reuses the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RawRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


# The bytes to answer a request with, or None to close the connection unanswered.
Answer = Callable[[RawRequest], bytes | None]


@dataclass
class RawLog:
    requests: list[RawRequest] = field(default_factory=list)

    def to(self, target_prefix: str) -> list[RawRequest]:
        return [r for r in self.requests if r.target.startswith(target_prefix)]


def response(status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 response; `headers` go out as given, Content-Length included."""
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return b"HTTP/1.1 %d Whatever\r\n%s\r\n%s" % (status, head, body)


def json_response(status: int, body: bytes, *extra: tuple[bytes, bytes]) -> bytes:
    return response(
        status,
        body,
        [
            (b"Content-Type", b"application/json"),
            (b"Content-Length", str(len(body)).encode()),
            *extra,
        ],
    )


async def _read_request(reader: asyncio.StreamReader) -> RawRequest:
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    fields = (line.partition(":") for line in lines)
    headers = [(name.strip(), value.strip()) for name, _, value in fields]
    length = next((int(v) for n, v in headers if n.lower() == "content-length"), 0)
    body = await reader.readexactly(length)
    return RawRequest(method, target, headers, body)


@asynccontextmanager
async def raw_upstream(answer: Answer) -> AsyncIterator[tuple[str, RawLog]]:
    """The server's base URL (no path) and its log, while it runs."""
    log = RawLog()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            request = await _read_request(reader)
            log.requests.append(request)
            reply = answer(request)
            if reply is not None:
                writer.write(reply)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", log
