"""Operation paths and the upstream URLs built from them.

A path is accepted only if it cannot change where the request goes: it starts
with exactly one '/', has no scheme, host, user info, backslash, control or
non-ASCII character, no query or fragment, and no '.' or '..' segment, plain
or percent-encoded; an encoded '/' separates segments too, since servers that
decode it before resolving dot segments would climb out of the prefix. The
URL is then built from the upstream's own scheme, host and port, and checked
once more before anything is sent.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from yarl import URL

MAX_PATH_LENGTH = 2048
# RFC 3986 pchar plus '/': unreserved, sub-delims, ':', '@', and %XX escapes.
_PATH_CHARACTERS = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
# Escapes that would smuggle a dot segment, a backslash or a control character.
_FORBIDDEN_ESCAPES = re.compile(r"%(?:2[eE]|5[cC]|[01][0-9A-Fa-f]|7[fF])")
_SEGMENT_SEPARATOR = re.compile(r"/|%2[fF]")
# A host name (IDNs arrive as punycode), an IPv4 address or an IPv6 one (unbracketed).
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+")


def path_problem(path: str) -> str | None:
    """Why this path is refused, or None when it is safe to send."""
    if not path.startswith("/") or path.startswith("//"):
        return "path must start with a single '/'"
    if len(path) > MAX_PATH_LENGTH:
        return f"path must be at most {MAX_PATH_LENGTH} characters"
    if "\\" in path:
        return "path must not contain a backslash"
    if "?" in path or "#" in path:
        return "path must not contain '?' or '#'; put parameters in query_params"
    if not _PATH_CHARACTERS.fullmatch(path):
        return "path has characters that are not valid in a URL path"
    if _FORBIDDEN_ESCAPES.search(path):
        return "path must not percent-encode '.', '\\' or control characters"
    if any(segment in (".", "..") for segment in _SEGMENT_SEPARATOR.split(path)):
        return "path must not contain '.' or '..' segments"
    return None


def encode_query(params: Mapping[str, Any] | None) -> str:
    """Rails-style: lists as repeated `key[]=v`, objects as `key[sub]=v`.

    Keys come out sorted: a Struct keeps no order, and a stable query string
    makes requests reproducible (and cacheable upstream).
    """
    if not params:
        return ""
    pairs = _pairs(params, prefix=None)
    return "&".join(f"{quote(key, safe='[]')}={quote(value, safe='')}" for key, value in pairs)


def _pairs(value: Any, prefix: str | None) -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for key, item in sorted(value.items()):
            yield from _pairs(item, str(key) if prefix is None else f"{prefix}[{key}]")
    elif isinstance(value, list):
        assert prefix is not None
        if not value:
            yield f"{prefix}[]", ""
        for item in value:
            yield from _pairs(item, f"{prefix}[]")
    else:
        assert prefix is not None
        yield prefix, _scalar(value)


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


class UpstreamError(ValueError):
    """BATCH_UPSTREAM_URL is unusable, or a built URL left the upstream."""


@dataclass(frozen=True)
class Upstream:
    """The upstream's origin and path prefix; the only place requests may go."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, base_url: str) -> Upstream:
        try:
            # yarl raises plain ValueErrors (a bracket left open, a port out of
            # range) while parsing, and some only when a part is read.
            url = URL(base_url)
            host, raw_host, port = url.host, url.raw_host, url.port
        except ValueError as error:
            raise UpstreamError(f"BATCH_UPSTREAM_URL is not a valid URL: {error}") from None
        if url.scheme not in ("http", "https") or not host or not raw_host:
            raise UpstreamError("BATCH_UPSTREAM_URL must be an http:// or https:// URL with a host")
        if not _HOST.fullmatch(raw_host) or port is None or not 0 < port < 65536:
            raise UpstreamError("BATCH_UPSTREAM_URL must name a valid host and port")
        if url.user or url.password or url.query_string or url.fragment:
            raise UpstreamError(
                "BATCH_UPSTREAM_URL must not carry user info, a query or a fragment"
            )
        return cls(url.scheme, host, port, url.raw_path.rstrip("/"))

    @functools.cached_property
    def origin(self) -> URL:
        return URL.build(scheme=self.scheme, host=self.host, port=self.port)

    def url_for(self, path: str, query_params: Mapping[str, Any] | None) -> URL:
        problem = path_problem(path)
        if problem:
            raise UpstreamError(problem)
        # The authority comes from `origin`, which yarl encodes itself: with
        # encoded=True a bare host would lose an IPv6 address's brackets or an
        # IDN's punycode, and the origin check below would refuse every URL.
        url = URL.build(
            scheme=self.scheme,
            authority=self.origin.raw_authority,
            path=self.prefix + path,
            query_string=encode_query(query_params),
            encoded=True,
        )
        if url.origin() != self.origin or not url.raw_path.startswith(self.prefix + "/"):
            raise UpstreamError("built URL left the upstream")
        return url
