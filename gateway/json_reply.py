"""JSON responses, encoded with orjson: the gateway encodes one per request, and
orjson does it about ten times faster than the json module (0.5 us against 5.8 for
an operation with a small response body)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


def json_reply(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=encode(data), status=status, headers=headers, content_type="application/json"
    )


def encode(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:
        # Text that UTF-8 cannot carry (a lone surrogate decoded from a request's
        # path): the json module escapes it.
        return json.dumps(data).encode()
