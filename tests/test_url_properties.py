"""Property tests of operation paths and query strings (service/engine/urls.py).

Whatever path a client sends, the request either goes to the upstream's own
origin, under its path prefix, or is refused with UpstreamError before
anything is sent; query_params come out of a Rails-style parser as they went in.
"""

from __future__ import annotations

import itertools
import json
import re
import string
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus, unquote_to_bytes

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from service.engine.urls import Upstream, UpstreamError, encode_query, path_problem

BASES = [
    "http://127.0.0.1:8080",
    "http://127.0.0.1:8080/",
    "https://api.example.test/base/",
    "https://api.example.test/base",
    "http://[::1]:9000/a/b",
    "https://bücher.example.test/api",
]
# Pieces that have moved requests elsewhere in other URL builders.
TRICKY = [
    "/",
    "//",
    "//host",
    "http://",
    "https://evil.test",
    "\\",
    "%5c",
    "..",
    ".",
    "%2e",
    "%2E",
    "%2e%2e",
    "%2f",
    "%2F",
    "@",
    "user@evil.test",
    ":",
    ":80",
    "?",
    "#",
    "%",
    "%00",
    "%0a",
    "%7f",
    "é",
    "~",
    ";",
    "=",
    "&",
    "[",
    "]",
    "%41",
    "v1",
    "products",
    "\x00",
    "\n",
    "\r",
    "\t",
    " ",
    "\x7f",
    "\u2028",
    "\ufeff",
]
PCHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"
# What a query string may hold without a character that ends a key, a value or the query.
QUERY_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~%\[\]=&]*")
OPENAPI = Path(__file__).resolve().parent.parent / "gateway" / "openapi.json"
OPENAPI_PATH_PATTERN = re.compile(
    json.loads(OPENAPI.read_text())["components"]["schemas"]["NewBatchOperation"]["properties"][
        "path"
    ]["pattern"]
)

JSON = Any

tricky_paths = st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=4)), max_size=8).map(
    "".join
)
plausible_paths = st.lists(
    st.one_of(st.sampled_from(TRICKY), st.text(alphabet=PCHARS, min_size=1, max_size=6)),
    max_size=8,
).map(lambda parts: "/" + "".join(parts))
paths = st.one_of(tricky_paths, plausible_paths, st.text(max_size=40))

PREFIX = "/api/v2"
# Pieces of the spellings that read as '.', '/' or '\\' to some server.
REREAD_PIECES = [
    ";",
    "%",
    "2",
    "5",
    "e",
    "E",
    "c0",
    "ae",
    ".",
    "/",
    "\uff0e",
    "%2e",
    "%25",
    "%c0",
    "%ae",
    "%C0%AE",
    "%e0%80%ae",
    "%ef%bc%8e",
    "%EF%BC%8F",
    "%ef%bc%bc",
    "%2f",
    "%3b",
    "a",
    "..",
    "%u",
    "002e",
    "f",
    "%e2%80%a5",
    "%ef%bc%85",
    "=",
    "\\",
    "%5c",
    "00",
]
reread_paths = st.lists(st.sampled_from(REREAD_PIECES), max_size=10).map(
    lambda parts: "/" + "".join(parts)
)

scalars = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
# Brackets in a key cannot be told from Rails' nesting syntax, so keys hold none.
keys = st.text(st.characters(codec="utf-8", exclude_characters="[]"), min_size=1, max_size=6)
# The contract's query_params: scalars and lists of them, in objects nested at will.
query_values = st.recursive(
    st.one_of(scalars, st.lists(scalars, min_size=1, max_size=3)),
    lambda children: st.dictionaries(keys, children, min_size=1, max_size=3),
    max_leaves=8,
)
query_params = st.dictionaries(keys, query_values, max_size=4)
any_json = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=10,
)


@pytest.mark.parametrize("base", BASES)
@settings(max_examples=100, deadline=None)
@given(path=paths, params=st.one_of(st.none(), st.dictionaries(st.text(max_size=4), any_json)))
@example(path="/v1/products", params={"page": 2})
@example(path="/..%2Fadmin", params=None)
@example(path="/x%2F..%2F..%2Fadmin", params=None)
@example(path="/%2e%2e/admin", params=None)
@example(path="//evil.test/x", params=None)
@example(path="/@evil.test/x", params=None)
@example(path="http://evil.test/x", params=None)
@example(path="/\\evil.test", params=None)
def test_an_accepted_path_stays_on_the_upstream_under_its_prefix(
    base: str, path: str, params: dict[str, JSON] | None
) -> None:
    upstream = Upstream.parse(base)
    try:
        url = upstream.url_for(path, params)
    except UpstreamError:
        assert path_problem(path) is not None, "an accepted path must be sendable"
        return
    assert path_problem(path) is None
    assert (url.scheme, url.host, url.port) == (upstream.scheme, upstream.host, upstream.port)
    assert url.raw_path == upstream.prefix + path
    assert (remove_dot_segments(unquote(url.raw_path)) + "/").startswith(upstream.prefix + "/")
    assert url.raw_query_string == encode_query(params)


@settings(max_examples=200, deadline=None)
@given(path=paths)
def test_a_path_that_path_problem_rejects_is_never_built(path: str) -> None:
    problem = path_problem(path)
    assume(problem is not None)
    for base in BASES:
        with pytest.raises(UpstreamError) as raised:
            Upstream.parse(base).url_for(path, None)
        assert str(raised.value) == problem


@settings(max_examples=200, deadline=None)
@given(path=st.one_of(paths, reread_paths))
@example(path="/a\n")
@example(path="/..%2Fadmin")
@example(path="/..;/admin")
def test_the_openapi_path_pattern_accepts_what_path_problem_accepts(path: str) -> None:
    # JSON Schema applies `pattern` unanchored, as re.search does. No pattern can
    # say how servers decode and fold a path: the service alone refuses those.
    assume(len(path) <= 2048)
    accepted_by_document = OPENAPI_PATH_PATTERN.search(path) is not None
    problem = path_problem(path)
    if problem is None:
        assert accepted_by_document
    elif accepted_by_document:
        assert "however a server reads it" in problem, problem


def _tomcat(path: str) -> str:
    return re.sub(r";[^/]*", "", path)


def _decoded_once(path: str) -> str:
    return unquote(path, errors="replace")


def _overlong(path: str) -> str:
    """Decoded by a UTF-8 reader that takes overlong forms (2, 3 and 4 bytes)."""
    raw = unquote_to_bytes(path)
    raw = re.sub(
        rb"[\xc0\xc1][\x80-\xbf]", lambda m: bytes([(m[0][0] & 0x1F) << 6 | m[0][1] & 0x3F]), raw
    )
    raw = re.sub(
        rb"\xe0[\x80-\x81][\x80-\xbf]", lambda m: bytes([(m[0][1] & 1) << 6 | m[0][2] & 0x3F]), raw
    )
    raw = re.sub(rb"\xf0\x80\x80[\x80-\xbf]", lambda m: bytes([m[0][3] & 0x3F]), raw)
    return raw.decode("utf-8", errors="replace")


def _iis_unicode(path: str) -> str:
    return re.sub(r"%u([0-9A-Fa-f]{4})", lambda m: chr(int(m[1], 16)), path)


def _nfkc(path: str) -> str:
    return unicodedata.normalize("NFKC", path)


SERVER_READINGS: list[Callable[[str], str]] = [
    _tomcat,
    _decoded_once,
    _overlong,
    _iis_unicode,
    _nfkc,
]


def server_readings(raw_path: str) -> set[str]:
    """Every chain of up to four readings: decode twice, then fold, then drop parameters..."""
    readings = {raw_path}
    for length in range(1, 5):
        for chain in itertools.product(SERVER_READINGS, repeat=length):
            reading = raw_path
            for read in chain:
                reading = read(reading)
            readings.add(reading)
    return readings


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, with '\\' as a separator too, as Windows servers take it."""
    output: list[str] = []
    for segment in path.replace("\\", "/").split("/")[1:]:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    return "/" + "/".join(output)


@settings(max_examples=400, deadline=None)
@given(path=reread_paths)
@example(path="/..;/admin")
@example(path="/%252e%252e/admin")
@example(path="/%c0%ae%c0%ae/admin")
@example(path="/%ef%bc%8e%ef%bc%8e/admin")
@example(path="/x%EF%BC%8F%ef%bc%8e%ef%bc%8e%EF%BC%8F%ef%bc%8e%ef%bc%8e")
@example(path="/%25c0%25ae%25c0%25ae/admin")
@example(path="/..%3b/admin")
@example(path="/%e2%80%a5/admin")
@example(path="/a%2f..")
def test_no_server_reading_of_an_accepted_path_leaves_the_prefix(path: str) -> None:
    upstream = Upstream.parse(f"http://127.0.0.1:8080{PREFIX}")
    try:
        url = upstream.url_for(path, None)
    except UpstreamError:
        return
    segments = url.raw_path.count("/")
    for reading in server_readings(url.raw_path):
        resolved_path = remove_dot_segments(reading)
        assert resolved_path.startswith(PREFIX + "/"), (path, reading)
        assert reading.count("/") == segments, (path, reading)
        assert "\\" not in reading, (path, reading)


@pytest.mark.parametrize(
    "path",
    [
        "/ids/123",
        "/a%20b",
        "/caf%C3%A9",
        "/%E6%97%A5%E6%9C%AC/%D0%BA%D0%B8%D1%80",
        "/products;v=2/list",
        "/100%25",
        "/a.b/c..d/...",
        "/v1/orders/9f1c-2a;x",
    ],
)
def test_paths_clients_send_are_kept(path: str) -> None:
    assert path_problem(path) is None


def parse_rails_query(query: str) -> dict[str, JSON]:
    """Rack's reading of a query: `k[]=v` appends to a list, `k[sub]=v` nests."""
    result: dict[str, JSON] = {}
    for pair in query.split("&") if query else []:
        raw_key, _, raw_value = pair.partition("=")
        key, value = unquote_plus(raw_key), unquote_plus(raw_value)
        head, _, tail = key.partition("[")
        *parents, leaf = [head, *(tail[:-1].split("][") if tail else [])]
        if leaf == "" and parents:
            *parents, leaf = parents
            _descend(result, parents).setdefault(leaf, []).append(value)
        else:
            _descend(result, parents)[leaf] = value
    return result


def _descend(node: dict[str, JSON], names: list[str]) -> dict[str, JSON]:
    for name in names:
        node = node.setdefault(name, {})
    return node


def assert_same(parsed: JSON, sent: JSON) -> None:
    """A parsed value (all text) says the same as the JSON value that was sent."""
    if isinstance(sent, dict):
        assert isinstance(parsed, dict) and parsed.keys() == sent.keys()
        for key, value in sent.items():
            assert_same(parsed[key], value)
    elif isinstance(sent, list):
        assert isinstance(parsed, list) and len(parsed) == len(sent)
        for parsed_item, sent_item in zip(parsed, sent, strict=True):
            assert_same(parsed_item, sent_item)
    elif isinstance(sent, bool):
        assert parsed == ("true" if sent else "false")
    elif isinstance(sent, int | float):
        assert float(parsed) == sent
    elif sent is None:
        assert parsed == ""
    else:
        assert parsed == sent


@settings(max_examples=150, deadline=None)
@given(params=query_params)
@example(params={"a&b=c#d": "e&f=g#h", "plus+ space": "1 + 1"})
@example(params={"filter": {"ids": ["x", "y"], "status": "open"}, "page": 2})
def test_encode_query_round_trips_through_a_rails_parser(params: dict[str, JSON]) -> None:
    query = encode_query(params)
    assert QUERY_CHARACTERS.fullmatch(query), query
    assert_same(parse_rails_query(query), params)
