"""A tiny upstream for dev mode: it echoes each request as JSON.

`make run` starts it when no BATCH_UPSTREAM_URL is set, so the quickstart
shows a real round trip without any other server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiohttp import web

from batchd.config import env, host_port
from batchd.sites import start_site


@dataclass(frozen=True)
class DemoUpstreamSettings:
    address: str = field(
        default="127.0.0.1:8081",
        metadata=env(
            "BATCH_DEMO_UPSTREAM_ADDRESS",
            "host:port of the echoing demo upstream that dev mode starts without an upstream URL",
        ),
    )

    def __post_init__(self) -> None:
        host_port(self.address, "BATCH_DEMO_UPSTREAM_ADDRESS")

    @property
    def url(self) -> str:
        return f"http://{self.address}"


async def echo(request: web.Request) -> web.Response:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace")
    return web.json_response(
        {
            "echo": True,
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "body": body,
        }
    )


async def start_demo_upstream(settings: DemoUpstreamSettings) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    host, port = host_port(settings.address, "BATCH_DEMO_UPSTREAM_ADDRESS")
    return await start_site(app, host, port, "BATCH_DEMO_UPSTREAM_ADDRESS")
