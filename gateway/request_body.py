"""Reading a request's body, in the time a client is given to send it.

aiohttp reads a body as slowly as its client sends it; a client that trickles a
byte now and then would hold its connection (and its handler) forever. The
time is counted for the whole body, as BATCH_HTTP_BODY_TIMEOUT says.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.errors import ApiProblem
from gateway.settings import SETTINGS_KEY


async def read_body(request: web.Request) -> bytes:
    limit = request.app[SETTINGS_KEY].body_timeout
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        raise ApiProblem(
            408,
            "request_timeout",
            f"The request body did not arrive within {limit:g} s",
            close_connection=True,
        ) from None
