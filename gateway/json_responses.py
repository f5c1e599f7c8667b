"""Responses whose body is JSON, written once, the same way for every endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from batchd.json_values import dump_json


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dump_json(data),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )
