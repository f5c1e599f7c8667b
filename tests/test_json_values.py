"""The shortcut that decides from a document's text whether its JSON is storable agrees
with the full walk, whatever the document and however it is encoded; and every
number a client writes reaches the upstream as written, or is refused by name."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from enum import IntEnum
from typing import Any
from urllib.parse import unquote

import pytest
from google.protobuf import struct_pb2
from hypothesis import example, given, settings
from hypothesis import strategies as st

from batchd.json_values import (
    MAX_DEPTH,
    from_struct,
    load_json,
    storable,
    storable_document,
    to_struct,
    to_value,
)
from batchd.v1 import batch_pb2
from gateway.batch_body import create_request
from gateway.errors import ApiProblem
from service.engine.urls import encode_query

texts = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=40,
)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@settings(max_examples=400, deadline=None)
@given(json_values, st.booleans(), st.sampled_from(["utf-8", "utf-16", "utf-32"]))
@example({"text": "a\x00b"}, False, "utf-8")
@example({"text": "\ud800"}, True, "utf-8")
@example({"text": "a\x00b"}, False, "utf-16")
@example(nested(MAX_DEPTH + 1), True, "utf-8")
@example(nested(MAX_DEPTH), True, "utf-8")
def test_the_text_shortcut_agrees_with_the_full_walk(
    value: Any, ascii_only: bool, encoding: str
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError:
        return  # a lone surrogate has no UTF-8 form: such text never arrives as UTF-8
    try:
        parsed = load_json(raw)
    except ValueError:
        return  # NaN, infinities and numbers beyond a double never get this far
    assert storable_document(raw, parsed) == storable(parsed)


@given(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
def test_numbers_json_cannot_spell_are_not_storable(number: float) -> None:
    assert not storable({"nested": [number]})


def _around(*centres: int) -> st.SearchStrategy[int]:
    return st.sampled_from(centres).flatmap(lambda c: st.integers(c - 3, c + 3))


# Numbers as clients write them, where doubles stop being exact: integers about
# 2**53, 2**63 and 2**64, negative too; floats; and mantissas with exponents.
integer_texts = st.one_of(
    _around(2**53, 2**63, 2**64, 10**21, 10**23, 0), st.integers(), st.integers(-(2**70), 2**70)
).flatmap(lambda n: st.sampled_from([str(n), str(-n)]))
float_texts = st.floats(allow_nan=False, allow_infinity=False).map(repr)
exponent_texts = st.builds(
    lambda mantissa, fraction, exponent: f"{mantissa}{fraction}e{exponent}",
    st.integers(-(10**17), 10**17),
    st.sampled_from(["", ".0", ".5", ".25", ".1000000000000000055511151231257827"]),
    st.integers(-400, 400),
)
number_texts = st.one_of(integer_texts, float_texts, exponent_texts)


def _create_body(number: str) -> bytes:
    """A create request whose second operation holds `number` in its body and query."""
    operation = (
        '{"http_method": "POST", "path": "/orders", "body": {"order": {"id": NUMBER}},'
        ' "query_params": {"ids": ["a", NUMBER]}}'
    ).replace("NUMBER", number)
    first = '{"http_method": "GET", "path": "/x"}'
    return f'{{"batch": {{"batch_operations": [{first}, {operation}]}}}}'.encode()


@settings(max_examples=400, deadline=None)
@given(number_texts)
@example("9007199254740993")
@example("9007199254740992")
@example("-9223372036854775809")
@example("18446744073709551616")
@example("5")
@example("5.0")
@example("-0")
@example("1e21")
@example("1e23")
@example("1e400")
@example("0.1")
@example("1" + "0" * 5000)
def test_a_number_reaches_the_upstream_as_written_or_is_refused_by_name(number: str) -> None:
    """What the gateway accepts, the service sends with the value written: the body as
    JSON (aiohttp's json.dumps), query parameters as text; an integer stays an integer."""
    try:
        request = create_request(_create_body(number), batch_pb2.BATCH_VIEW_BASIC)
    except ApiProblem as problem:
        assert problem.status == 422
        assert [e.attribute for e in problem.validation_errors] == [
            "batch_operations[1].body.order.id",
            "batch_operations[1].query_params.ids[1]",
        ]
        return
    operation = request.batch.batch_operations[1]
    body_text = json.dumps(from_struct(operation.body))
    query = encode_query(from_struct(operation.query_params))
    sent = json.loads(body_text, parse_float=str, parse_int=str)["order"]["id"]
    in_query = unquote(query.split("&")[1].split("=", 1)[1])
    for written in (sent, in_query):
        assert Decimal(written) == Decimal(number)
        if re.fullmatch(r"-?[0-9]+", number):
            assert written == str(int(number))


def protobufs_own_value(data: Any) -> struct_pb2.Value:
    """What protobuf's Struct.update() and ListValue.extend() make of `data`."""
    holder = struct_pb2.ListValue()
    holder.append(data)
    return holder.values[0]


class Colour(IntEnum):
    RED = 1


class Name(str):
    """A str subclass: JSON from elsewhere than json.loads may hold one."""


# Past every exact type fill_value dispatches on: what protobuf's path takes.
unusual = st.sampled_from([(1, "a"), Colour.RED, Name("n"), ({"k": []},), [(), {}]])
filled_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False)
    | texts
    | unusual,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(filled_values)
@example({})
@example([])
@example({"a": {}, "b": [], "c": [{}, []], "d": None})
def test_values_fill_as_protobufs_own_update_does(data: Any) -> None:
    try:
        reference = protobufs_own_value(data)
    except UnicodeEncodeError:  # a lone surrogate: no protobuf string holds one
        with pytest.raises(UnicodeEncodeError):
            to_value(data)
        return
    built = to_value(data)
    assert built == reference
    assert built.SerializeToString(deterministic=True) == reference.SerializeToString(
        deterministic=True
    )
    if isinstance(data, dict):
        struct = to_struct(data)
        assert struct == reference.struct_value
        assert struct.SerializeToString(deterministic=True) == (
            reference.struct_value.SerializeToString(deterministic=True)
        )


@pytest.mark.parametrize("data", [object(), {"nested": [b"bytes"]}, {"big": 2**1100}, {1: "key"}])
def test_what_protobuf_refuses_is_refused_alike(data: Any) -> None:
    with pytest.raises(Exception) as expected:
        protobufs_own_value(data)
    with pytest.raises(type(expected.value)):
        to_value(data)
