"""Operation paths and the upstream URLs built from them.

A path is accepted only if it cannot change where the request goes: it starts
with exactly one '/', has no scheme, host, user info, backslash, control or
non-ASCII character, no query or fragment, and no '.' or '..' segment, plain
or percent-encoded; an encoded '/' separates segments too, since servers that
decode it before resolving dot segments would climb out of the prefix. Nor
may it have one under any reading a common server gives it before resolving
dot segments (see _readings): Servlet containers drop ';' parameters, so
`/..;/x` climbs; proxies and frameworks decode twice (`%252e`); lenient
decoders take overlong UTF-8 (`%c0%ae` is '.'); Unicode normalisation folds
full-width dots (U+FF0E). The URL is then built from the upstream's own scheme,
host and port, and checked once more before anything is sent.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from yarl import URL

from batchd.json_values import as_exact

MAX_PATH_LENGTH = 2048
# RFC 3986 pchar plus '/': unreserved, sub-delims, ':', '@', and %XX escapes.
# Runs of plain characters between escapes, matched a run at a time: an
# alternation tried per character cost half of path_problem, which runs on
# every operation twice (CreateBatch, then before the send). Each escape starts
# with the one '%', so the match cannot backtrack into the runs.
_PCHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*"
_PATH_CHARACTERS = re.compile(rf"{_PCHAR}(?:%[0-9A-Fa-f]{{2}}{_PCHAR})*")
# Escapes that would smuggle a dot segment, a backslash or a control character.
_FORBIDDEN_ESCAPES = re.compile(r"%(?:2[eE]|5[cC]|[01][0-9A-Fa-f]|7[fF])")
# A '.' or '..' segment, between '/' or an encoded '/' (or the path's ends).
_DOT_SEGMENT = re.compile(r"(?:^|/|%2[fF])\.\.?(?=$|/|%2[fF])")
# %XX, and IIS's %uXXXX, which a path decoded once may spell.
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})|%[uU]([0-9A-Fa-f]{4})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Readings grow only by folding what decoding produced; a path with more than
# this many is refused rather than read further.
MAX_READINGS = 64
_UNSAFE_READING = (
    "path must stay under the upstream's prefix however a server reads it: decoded "
    "(once or twice, overlong UTF-8 too), without ';' parameters or Unicode-normalised, "
    "it must have no '.' or '..' segment, backslash or control character and no other "
    "'/' than as written"
)
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
    if _DOT_SEGMENT.search(path):
        return "path must not contain '.' or '..' segments"
    if "%" not in path and ";" not in path:
        return None  # ASCII read as written: every reading is the path, checked above
    readings = _readings(path)
    if readings is None or not all(_safe_reading(r, path.count("/")) for r in readings):
        return _UNSAFE_READING
    return None


def _readings(path: str) -> set[str] | None:
    """The path as each common server may read it, and as chains of those
    readings (decoding after dropping parameters, folding after decoding...);
    None when there are too many to check."""
    readings = {path}
    pending = [path]
    while pending:
        reading = pending.pop()
        for read in (_decoded, _without_parameters, _folded):
            other = read(reading)
            if other not in readings:
                if len(readings) == MAX_READINGS:
                    return None
                readings.add(other)
                pending.append(other)
    return readings


def _safe_reading(reading: str, separators: int) -> bool:
    return (
        reading.count("/") == separators
        and "\\" not in reading
        and not _CONTROL.search(reading)
        and not any(segment in (".", "..") for segment in reading.split("/"))
    )


def _decoded(reading: str) -> str:
    """Percent-decoded as the most lenient servers do: %uXXXX too, and UTF-8
    read without refusing overlong forms."""
    raw = _ESCAPE.sub(_unescape, reading.encode("utf-8", "surrogatepass"))
    return _lenient_utf8(raw)


def _unescape(match: re.Match[bytes]) -> bytes:
    byte, code_point = match.groups()
    if byte is not None:
        return bytes([int(byte, 16)])
    return chr(int(code_point, 16)).encode("utf-8", "surrogatepass")


def _lenient_utf8(raw: bytes) -> str:
    """UTF-8 as decoders that skip the overlong check read it: %c0%ae is '.',
    as are %e0%80%ae and the 4- to 6-byte forms; stray bytes are U+FFFD."""
    characters = []
    index = 0
    while index < len(raw):
        lead = raw[index]
        length = next((n for n, top in _LEADS if lead < top), 1)
        tail = raw[index + 1 : index + length]
        if length == 1 or len(tail) != length - 1 or any(b & 0xC0 != 0x80 for b in tail):
            characters.append(chr(lead) if lead < 0x80 else "\ufffd")
            index += 1
            continue
        code_point = lead & (0x7F >> length)
        for byte in tail:
            code_point = code_point << 6 | byte & 0x3F
        characters.append(chr(code_point) if code_point <= 0x10FFFF else "\ufffd")
        index += length
    return "".join(characters)


# A lead byte below `top` starts a sequence of `n` bytes (ASCII and stray bytes: 1).
_LEADS = ((1, 0xC0), (2, 0xE0), (3, 0xF0), (4, 0xF8), (5, 0xFC), (6, 0xFE))


def _without_parameters(reading: str) -> str:
    """As Servlet containers read it: each segment's ';' parameters dropped."""
    return "/".join(segment.split(";", 1)[0] for segment in reading.split("/"))


def _folded(reading: str) -> str:
    """NFKC, which folds U+FF0E to '.', U+FF0F to '/' and U+FF3C to a backslash."""
    return unicodedata.normalize("NFKC", reading)


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
    if isinstance(value, float):
        return str(as_exact(value))
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
