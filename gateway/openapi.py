"""GET /openapi.json: the REST contract as an OpenAPI 3.1 document, read once at start-up."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

DOCUMENT_PATH = Path(__file__).with_name("openapi.json")
DOCUMENT_KEY = web.AppKey("openapi_document", bytes)


def load_document(app: web.Application) -> None:
    app[DOCUMENT_KEY] = DOCUMENT_PATH.read_bytes()


async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT_KEY], content_type="application/json")
