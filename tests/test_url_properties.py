"""Property tests of operation paths and query strings (service/engine/urls.py).

Whatever path a client sends, the request either goes to the upstream's own
origin, under its path prefix, or is refused with UpstreamError before
anything is sent; query_params come out of a Rails-style parser as they went in.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus

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


def resolved(raw_path: str) -> str:
    """The path as a server sees it that decodes escapes before resolving dot segments."""
    segments: list[str] = []
    for segment in unquote(raw_path).split("/")[1:]:
        if segment == "..":
            if segments:
                segments.pop()
        elif segment != ".":
            segments.append(segment)
    return "/" + "/".join(segments)


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
    assert (resolved(url.raw_path) + "/").startswith(upstream.prefix + "/")
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
@given(path=paths)
@example(path="/a\n")
@example(path="/..%2Fadmin")
def test_the_openapi_path_pattern_accepts_what_path_problem_accepts(path: str) -> None:
    # JSON Schema applies `pattern` unanchored, as re.search does.
    assume(len(path) <= 2048)
    accepted_by_document = OPENAPI_PATH_PATTERN.search(path) is not None
    assert accepted_by_document == (path_problem(path) is None)


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
