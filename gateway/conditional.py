"""Conditional reads (RFC 9110 8.8.3, 13.1.2, 15.4.5): an `ETag` on every read of a batch,
an operation or a list of them, and `If-None-Match` answered `304 Not Modified`.

The tag hashes the response body, so it changes exactly when the answer does: a strong
validator (the same tag is the same bytes). If-None-Match compares weakly, as RFC 9110
13.1.2 requires (`W/"x"` matches `"x"`); `*` matches any current representation; a
header value that is no list of entity tags matches nothing. The service is called
first either way, so a 304 goes only to a caller who may read the object: another
tenant still gets its 404, and a poller saves the body, not the check.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from batchd.json_values import dump_json

# An entity tag: optional weakness, then an opaque quoted string (RFC 9110 8.8.3).
_ENTITY_TAG = re.compile(r'\s*(?:W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')


def entity_tag(body: bytes) -> str:
    return f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'


def none_match(header_values: Iterable[str], tag: str) -> bool:
    """Whether If-None-Match (all its field lines) names `tag`, weakly compared."""
    opaque = tag.strip('"')
    for value in header_values:
        if value.strip() == "*":
            return True
        position = 0
        while position < len(value):
            found = _ENTITY_TAG.match(value, position)
            if found is None:
                break
            if found.group(1) == opaque:
                return True
            position = found.end()
    return False


def json_response(request: web.Request, data: Any) -> web.Response:
    """`data` as JSON with its ETag, or a bodiless 304 if the request already holds it."""
    body = dump_json(data)
    tag = entity_tag(body)
    if none_match(request.headers.getall("If-None-Match", ()), tag):
        return web.Response(status=304, headers={"ETag": tag})
    return web.Response(
        body=body, content_type="application/json", charset="utf-8", headers={"ETag": tag}
    )
