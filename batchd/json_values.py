"""Conversions between JSON-like Python values and protobuf Struct/Value.

Struct numbers are doubles; whole numbers come back as ints so that a `1`
sent in a body is shown as `1`, not `1.0`, at any magnitude: every integral
double is an exact integer, so `2**60` comes back as itself. What clients
send is read with load_client_json, which marks every number whose double
would not come back with the value as written.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from google.protobuf import struct_pb2

JSON = Any
# Integers beyond this are refused in what callers send: a Struct number is a double.
MAX_INTEGER = 2**63
# Beyond this no double holds an integer even roughly: what an upstream answers
# may go this far (read back, it loses precision as any double does).
MAX_DOUBLE_INTEGER = int(sys.float_info.max) + 1
# Each JSON level costs protobuf about three levels of nesting (Struct, map
# entry, Value), and protobuf refuses to decode messages nested over 100 deep.
MAX_DEPTH = 32


class TooDeep(ValueError):
    """The value nests deeper than allowed."""


def from_struct(struct: struct_pb2.Struct, max_depth: int = 100) -> dict[str, JSON]:
    if max_depth <= 0:
        raise TooDeep
    return {key: from_value(value, max_depth - 1) for key, value in struct.fields.items()}


def from_value(value: struct_pb2.Value, max_depth: int = 100) -> JSON:
    # Leaves first: most values of a body are strings and numbers, and every read of
    # an operation converts its whole response body here.
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return as_exact(value.number_value)
    if kind == "struct_value":
        return from_struct(value.struct_value, max_depth)
    if kind == "list_value":
        if max_depth <= 0:
            raise TooDeep
        return [from_value(item, max_depth - 1) for item in value.list_value.values]
    if kind == "bool_value":
        return value.bool_value
    return None


def as_exact(number: float) -> int | float:
    """A double as JSON writes its value: integral ones as integers (exact, of any
    size: `float` would write 2**60 as 1.152921504606847e+18), others as floats,
    whose shortest repr reads back as the same double."""
    return int(number) if number.is_integer() else number


def to_struct(data: dict[str, JSON]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    fill_struct(struct, data)
    return struct


def to_value(data: JSON) -> struct_pb2.Value:
    value = struct_pb2.Value()
    fill_value(value, data)
    return value


# Filled as protobuf's Struct.update() and ListValue.extend() fill them, for a third
# less: every read converts a stored response, and those two dispatch each value
# through a chain of isinstance() calls. JSON as json.loads makes it is dispatched here
# by exact type, the commonest kinds in the loop itself; anything else (subclasses,
# tuples, messages) takes protobuf's own path.


def fill_struct(struct: struct_pb2.Struct, data: dict[str, JSON]) -> None:
    """Fills an empty Struct (a message's field, in place) with `data`; marks it
    present even when `data` is empty."""
    if not data:
        struct.SetInParent()
    fields = struct.fields
    for key, item in data.items():
        kind = type(item)
        if kind is str:
            fields[key].string_value = item
        elif kind is int or kind is float:
            fields[key].number_value = item
        elif kind is bool:
            fields[key].bool_value = item
        else:
            fill_value(fields[key], item)


def _fill_list(values: Any, data: list[JSON]) -> None:
    for item in data:
        kind = type(item)
        if kind is str:
            values.add().string_value = item
        elif kind is int or kind is float:
            values.add().number_value = item
        elif kind is bool:
            values.add().bool_value = item
        else:
            fill_value(values.add(), item)


def fill_value(value: struct_pb2.Value, data: JSON) -> None:
    """Fills an empty Value (a message's field, in place) with `data`: an empty
    object or array stays one, not an unset value read back as null."""
    kind = type(data)
    if kind is dict:
        fill_struct(value.struct_value, data)
    elif kind is list:
        value.list_value.SetInParent()
        _fill_list(value.list_value.values, data)
    elif kind is str:
        value.string_value = data
    elif kind is int or kind is float:
        value.number_value = data
    elif kind is bool:
        value.bool_value = data
    elif data is None:
        value.null_value = struct_pb2.NULL_VALUE
    else:
        holder = struct_pb2.ListValue()
        holder.append(data)
        value.CopyFrom(holder.values[0])


def depth(value: JSON) -> int:
    """How deeply objects and arrays nest: 0 for a scalar, 1 for a flat object.

    Iterative, so that hostile nesting cannot exhaust the interpreter's stack.
    """
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is not None:
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in children)
    return deepest


def dump_json(data: JSON) -> bytes:
    """Compact UTF-8 JSON. orjson writes a read's object in a tenth of json.dumps'
    time; what it refuses (integers beyond 64 bits, lone surrogates) json.dumps
    writes exactly, escaped."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data, separators=(",", ":")).encode()


def load_json(raw: bytes | str, max_integer: int = MAX_INTEGER) -> Any:
    """JSON as every part of batchd can carry it: NaN, Infinity, numbers no double
    holds and integers from `max_integer` on raise ValueError instead of parsing
    (absurd nesting raises RecursionError)."""
    if isinstance(raw, bytes):
        raw, _ = decode_json_bytes(raw)
    return _decoder(max_integer).decode(raw)


def decode_json_bytes(raw: bytes) -> tuple[str, str]:
    """JSON bytes as text, and their encoding: UTF-8, 16 or 32, told from the
    first bytes as json.loads does, but decoded strictly: json.loads lets encoded
    lone surrogates through, which no database or protobuf message can hold."""
    encoding = json.detect_encoding(raw)
    return raw.decode(encoding), encoding


def _refuse_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("number out of range")
    return number


# Built once per bound: json.loads with hooks would build a decoder per call.
@functools.cache
def _decoder(max_integer: int) -> json.JSONDecoder:
    def bounded_int(text: str) -> int:
        number = int(text)
        if abs(number) >= max_integer:
            raise ValueError("number out of range")
        return number

    return json.JSONDecoder(
        parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=bounded_int
    )


@dataclass(frozen=True)
class InexactNumber:
    """A number a client wrote that no double carries exactly as written, such
    as 9007199254740993 (it would arrive as 9007199254740992) or 1e400."""

    text: str


# The most digits the integer part of a double can have (sys.float_info.max).
_MAX_DOUBLE_DIGITS = len(str(int(sys.float_info.max)))


def _client_int(text: str) -> int | InexactNumber:
    # Checked before int(), which refuses over 4,300 digits.
    if len(text.lstrip("-")) > _MAX_DOUBLE_DIGITS:
        return InexactNumber(text)
    number = int(text)
    try:
        exact = int(float(number)) == number
    except OverflowError:
        exact = False
    return number if exact else InexactNumber(text)


def _client_float(text: str) -> float | InexactNumber:
    number = float(text)
    if math.isfinite(number) and Decimal(str(as_exact(number))) == Decimal(text):
        return number
    return InexactNumber(text)


_CLIENT_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_client_float, parse_int=_client_int
)


def load_client_json(raw: bytes) -> Any:
    """JSON a client sends: numbers as int and float where a double carries them
    as written (read back with as_exact, they write the same value), and as
    InexactNumber where not, for the caller to refuse by name. NaN and Infinity
    raise ValueError, as in load_json (absurd nesting raises RecursionError)."""
    text, _ = decode_json_bytes(raw)
    return _CLIENT_DECODER.decode(text)


def storable(value: Any) -> bool:
    """Whether every database and the API can hold this JSON as it is.

    Too deep a nesting breaks protobuf on every later read; a NUL character
    is refused by PostgreSQL's JSONB; a lone surrogate cannot be encoded; nor
    can NaN or an infinity be written as JSON.
    """
    pending = [(value, 0)]
    while pending:
        item, level = pending.pop()
        if level > MAX_DEPTH:
            return False
        if isinstance(item, str):
            if "\x00" in item or (not item.isascii() and has_surrogate(item)):
                return False
        elif isinstance(item, dict):
            pending.extend((key, level + 1) for key in item)
            pending.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, level + 1) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            return False
    return True


def storable_document(raw: bytes, parsed: Any) -> bool:
    """storable(parsed), for JSON read from `raw` with load_json (so every number
    is finite): most documents are decided from the text alone, without
    walking every value.

    UTF-8 JSON text can only spell a NUL or a lone surrogate as a \\u escape
    (raw control characters and invalid UTF-8 fail to parse); a NUL byte means
    another encoding (UTF-16 or 32), checked in full. A document nests no
    deeper than it has brackets.
    """
    if b"\\u" in raw or b"\x00" in raw or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        return storable(parsed)
    return True


def has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
