"""The REST ceiling: a bare aiohttp handler answering one operation's JSON from memory.

`python -m benchmarks.bare_http PORT JSON_FILE` serves the file's bytes at
GET /v1/batch_operations/{id}, with no gRPC, storage or authentication behind it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aiohttp import web

BODY_KEY = web.AppKey("body", bytes)


async def get_operation(request: web.Request) -> web.Response:
    return web.Response(body=request.app[BODY_KEY], content_type="application/json")


def make_app(body: bytes) -> web.Application:
    app = web.Application()
    app[BODY_KEY] = body
    app.router.add_get("/v1/batch_operations/{id}", get_operation)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_http")
    parser.add_argument("port", type=int)
    parser.add_argument("json_file", type=Path)
    args = parser.parse_args()
    web.run_app(
        make_app(args.json_file.read_bytes()), host="127.0.0.1", port=args.port, access_log=None
    )


if __name__ == "__main__":
    main()
