"""Serving an aiohttp application on host:port, for the gateway and the demo upstream."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def start_site(
    app: web.Application, host: str, port: int, setting: str, **options: Any
) -> web.AppRunner:
    """Serves `app` until the returned runner is cleaned up; `options` go to the runner.

    A port that cannot be bound raises a one-line OSError naming `setting` (the
    variable the address came from), with nothing left running."""
    return await start_runner(web.AppRunner(app, access_log=None, **options), host, port, setting)


async def start_runner(runner: web.AppRunner, host: str, port: int, setting: str) -> web.AppRunner:
    """Serves a runner made elsewhere (one with its own request handling) on host:port."""
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        await runner.cleanup()
        reason = error.strerror or str(error)
        raise OSError(f"cannot listen on {setting}={host}:{port}: {reason}") from None
    return runner
