"""Reading operations to submit: the REST contract's create body, a JSON list, or JSONL.

Only what a proto cannot carry is checked here (an unknown method, a body that
is not an object); the service validates the rest and names the bad fields.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from batchd.json_values import to_struct
from batchd.v1 import batch_pb2
from batchd.vocabulary import HTTP_METHODS

_FIELDS = ("http_method", "path", "body", "query_params")


class InputError(Exception):
    """The input cannot be read or parsed; the message is one line for the user."""


def read_operations(source: str) -> list[batch_pb2.BatchOperation]:
    """Operations from a file name, or from stdin when `source` is `-`."""
    text = _read(source)
    name = "stdin" if source == "-" else source
    objects = _parse(text, name)
    if not objects:
        raise InputError(f"{name}: no operations")
    return [_operation(item, f"{name}: operation {index}") for index, item in enumerate(objects)]


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        with open(source, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise InputError(f"cannot read {source}: {reason}") from None


def _loads(text: str, where: str) -> Any:
    """json.loads, with absurd nesting an input error rather than a crash."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply") from None


def _parse(text: str, name: str) -> list[Any]:
    try:
        document = _loads(text, name)
    except json.JSONDecodeError as error:
        if _first_line_is_json(text):
            return _parse_lines(text, name)
        raise InputError(f"{name}: invalid JSON at line {error.lineno}: {error.msg}") from None
    if isinstance(document, list):
        return document
    if isinstance(document, dict) and "batch" in document:
        batch = document["batch"]
        if isinstance(batch, dict) and isinstance(batch.get("batch_operations"), list):
            return list(batch["batch_operations"])
        raise InputError(f'{name}: expected {{"batch": {{"batch_operations": [...]}}}}')
    # A one-line JSONL file is a single JSON object.
    return [document]


def _first_line_is_json(text: str) -> bool:
    first = text.lstrip().partition("\n")[0]
    try:
        return isinstance(json.loads(first), dict)
    except (json.JSONDecodeError, RecursionError):
        return False


def _parse_lines(text: str, name: str) -> list[Any]:
    objects = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            objects.append(_loads(line, f"{name}: line {number}"))
        except json.JSONDecodeError as error:
            raise InputError(f"{name}: invalid JSON on line {number}: {error.msg}") from None
    return objects


def _operation(item: Any, where: str) -> batch_pb2.BatchOperation:
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected a JSON object")
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(_FIELDS)}")
    operation = batch_pb2.BatchOperation(http_method=_method(item.get("http_method"), where))
    path = item.get("path")
    if path is not None:
        if not isinstance(path, str):
            raise InputError(f"{where}: path must be a string")
        operation.path = path
    for field in ("body", "query_params"):
        value = item.get(field)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InputError(f"{where}: {field} must be a JSON object or null")
        try:
            struct = to_struct(value)
        except (UnicodeEncodeError, OverflowError, RecursionError):
            raise InputError(
                f"{where}: {field} holds a value no operation can carry"
                " (a lone surrogate, a number beyond a double, or too deep a nesting)"
            ) from None
        getattr(operation, field).CopyFrom(struct)
    return operation


def _method(value: Any, where: str) -> batch_pb2.HttpMethod:
    if value is None:
        # Left unset for the service to report with the other field violations.
        return batch_pb2.HTTP_METHOD_UNSPECIFIED
    if not isinstance(value, str) or value.upper() not in HTTP_METHODS:
        raise InputError(f"{where}: http_method must be one of {', '.join(sorted(HTTP_METHODS))}")
    return HTTP_METHODS[value.upper()]
