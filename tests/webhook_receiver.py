"""A real webhook receiver on loopback: records every POST and answers as scripted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.processes import free_port


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What arrived, and how to answer: the statuses to answer in turn (then 200), each
    after the delay in `delays` in turn (then at once), or a redirect to `redirect_to`."""

    port: int = field(default_factory=free_port)
    statuses: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    redirect_to: str | None = None
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        self.arrived.set()
        if self.delays:
            await asyncio.sleep(self.delays.pop(0))
        if self.redirect_to is not None:
            raise web.HTTPFound(self.redirect_to)
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"answered": status}, status=status)

    async def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        """The first `count` requests, once that many arrived."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received[:count]


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    """Serves the receiver on its port until the block ends (it may be served again)."""
    app = web.Application()
    app.router.add_post("/hooks", receiver.handle)
    # Answers still delayed at the end are cut off, not waited for (aiohttp waits 60 s).
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", receiver.port)
    await site.start()
    try:
        yield receiver
    finally:
        await runner.cleanup()
