"""Serving an aiohttp application on host:port, for the gateway and the demo upstream."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def start_site(app: web.Application, host: str, port: int, **options: Any) -> web.AppRunner:
    """Serves `app` until the returned runner is cleaned up; `options` go to the runner.

    A port that cannot be bound raises OSError, with nothing left running."""
    return await start_runner(web.AppRunner(app, access_log=None, **options), host, port)


async def start_runner(runner: web.AppRunner, host: str, port: int) -> web.AppRunner:
    """Serves a runner made elsewhere (one with its own request handling) on host:port."""
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
