"""The create body `{"batch": {"batch_operations": [...], "execution_options": {...},
"metadata": {...}}}` as a gRPC Batch.

The envelope and `execution_options` must have the right JSON types (else 400),
and strings must be valid Unicode (a lone surrogate such as `"\\ud800"` is a 400
too: protobuf cannot carry it). Inside an operation, values of the wrong type
are validation errors (422); an unknown or missing `http_method` goes as
UNSPECIFIED and a missing `path` as empty, for the service to report with the
rest of its checks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from google.protobuf import struct_pb2

from batchd.json_values import (
    MAX_DEPTH,
    InexactNumber,
    depth,
    has_surrogate,
    load_client_json,
    to_struct,
)
from batchd.messages import MAX_MESSAGE_BYTES
from batchd.v1 import batch_pb2
from batchd.vocabulary import HTTP_METHODS
from gateway.errors import ApiProblem, ValidationError, bad_request, unprocessable
from gateway.params import INT32_MAX, INT32_MIN

UNSPECIFIED = batch_pb2.HTTP_METHOD_UNSPECIFIED
# Named one by one up to this many per value; one is enough to correct the rest.
MAX_NUMBER_ERRORS = 10
_OPTION_TYPES = {"sequential": bool, "stop_on_failure": bool, "max_concurrency": int}


def create_request(
    raw: bytes, view: batch_pb2.BatchView, request_id: str = ""
) -> batch_pb2.CreateBatchRequest:
    request = batch_pb2.CreateBatchRequest(
        batch=batch_message(parse_json(raw)), view=view, request_id=request_id
    )
    if request.ByteSize() > MAX_MESSAGE_BYTES:
        # Small JSON values take more room in protobuf (batchd/messages.py).
        raise ApiProblem(
            413, "payload_too_large", "The batch is too large for the service; split it up"
        )
    return request


def parse_json(raw: bytes) -> Any:
    try:
        return load_client_json(raw)
    except (ValueError, RecursionError):
        raise bad_request("The request body is not valid JSON") from None


def batch_message(document: Any) -> batch_pb2.Batch:
    if not isinstance(document, dict) or not isinstance(document.get("batch"), dict):
        raise bad_request('The body must be a JSON object {"batch": {"batch_operations": [...]}}')
    operations = document["batch"].get("batch_operations", [])
    if not isinstance(operations, list):
        raise bad_request("batch.batch_operations must be a JSON array")
    errors: list[ValidationError] = []
    messages = [_operation(index, raw, errors) for index, raw in enumerate(operations)]
    labels = metadata(document["batch"].get("metadata"), errors)
    if errors:
        raise unprocessable("batch.invalid", errors)
    options = execution_options(document["batch"].get("execution_options"))
    return batch_pb2.Batch(batch_operations=messages, execution_options=options, metadata=labels)


def metadata(raw: Any, errors: list[ValidationError]) -> dict[str, str]:
    """`{"key": "value", ...}` or null; a value of another type is a 422 naming its key.
    The service checks how many keys there are and how long they are."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.append(
            ValidationError(
                "metadata", "batch.metadata.invalid", "metadata must be a JSON object or null"
            )
        )
        return {}
    labels = {}
    for key, value in raw.items():
        attribute = f"metadata[{key[:50]}]"
        if not isinstance(value, str):
            errors.append(
                ValidationError(
                    attribute,
                    "batch.metadata.value.invalid",
                    "metadata values must be strings (send numbers and objects as text)",
                )
            )
            continue
        labels[_unicode(attribute, key)] = _unicode(attribute, value)
    return labels


def execution_options(raw: Any) -> batch_pb2.ExecutionOptions | None:
    """`{"sequential": bool, "stop_on_failure": bool, "max_concurrency": int}`, all optional;
    numbers beyond int32 are a 422 here, in the service's words; it checks the rest."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_request("batch.execution_options must be a JSON object")
    unknown = sorted(set(raw) - set(_OPTION_TYPES))
    if unknown:
        raise bad_request(
            f"Unknown batch.execution_options key {unknown[0][:50]!r}; "
            f"known: {', '.join(_OPTION_TYPES)}"
        )
    for name, kind in _OPTION_TYPES.items():
        value = raw.get(name)
        # bool is an int in Python, but `true` is no concurrency limit.
        if value is not None and (type(value) is not kind):
            raise bad_request(f"batch.execution_options.{name} must be a {kind.__name__}")
    concurrency = raw.get("max_concurrency")
    # Negative values fit, for the service to refuse; larger ones cannot travel.
    if concurrency is not None and not INT32_MIN <= concurrency <= INT32_MAX:
        raise unprocessable(
            "batch.invalid",
            [
                ValidationError(
                    "execution_options.max_concurrency",
                    "batch.execution_options.max_concurrency.invalid",
                    f"max_concurrency must be 0 (the server's limit) up to {INT32_MAX}",
                )
            ],
        )
    return batch_pb2.ExecutionOptions(
        **{name: value for name, value in raw.items() if value is not None}
    )


def _operation(index: int, raw: Any, errors: list[ValidationError]) -> batch_pb2.BatchOperation:
    prefix = f"batch_operations[{index}]"
    if not isinstance(raw, dict):
        raise bad_request(f"{prefix} must be a JSON object")
    method = raw.get("http_method")
    message = batch_pb2.BatchOperation(
        http_method=HTTP_METHODS.get(method, UNSPECIFIED)
        if isinstance(method, str)
        else UNSPECIFIED
    )
    path = raw.get("path")
    if isinstance(path, str):
        message.path = _unicode(f"{prefix}.path", path)
    elif path is not None:
        errors.append(_invalid(prefix, "path", "path must be a string"))
    for name in ("body", "query_params"):
        value = raw.get(name)
        if value is not None and not isinstance(value, dict):
            errors.append(_invalid(prefix, name, f"{name} must be a JSON object or null"))
        elif value is not None and depth(value) > MAX_DEPTH:
            # Deeper values cannot travel in a gRPC message at all.
            errors.append(
                ValidationError(
                    f"{prefix}.{name}",
                    f"batch_operation.{name}.too_deep",
                    f"{name} must nest at most {MAX_DEPTH} levels",
                )
            )
        elif value is not None and (inexact := _inexact_numbers(f"{prefix}.{name}", value)):
            errors.extend(inexact)
        elif value is not None:
            getattr(message, name).CopyFrom(_struct(f"{prefix}.{name}", value))
    return message


def _inexact_numbers(attribute: str, value: Any) -> list[ValidationError]:
    """A Struct number is a double: a number it would change is refused by name,
    never sent as another value."""
    found = itertools.islice(_inexact_in(attribute, value), MAX_NUMBER_ERRORS)
    return [
        ValidationError(
            path,
            "batch_operation.number.inexact",
            f"{number.text[:40]} cannot be sent exactly: a number must be one a double "
            "holds as written (integers up to 2**53 always are); send others as strings",
        )
        for path, number in found
    ]


def _inexact_in(attribute: str, value: Any) -> Iterator[tuple[str, InexactNumber]]:
    pending = [(attribute, value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, InexactNumber):
            yield path, item
        elif isinstance(item, dict):
            pending.extend((f"{path}.{key}", child) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            indexed = [(f"{path}[{index}]", child) for index, child in enumerate(item)]
            pending.extend(reversed(indexed))


def _unicode(attribute: str, text: str) -> str:
    if has_surrogate(text):
        raise _not_unicode(attribute)
    return text


def _struct(attribute: str, value: dict[str, Any]) -> struct_pb2.Struct:
    # protobuf refuses strings (keys too) that cannot be UTF-8: lone surrogates.
    try:
        return to_struct(value)
    except UnicodeEncodeError:
        raise _not_unicode(attribute) from None


def _not_unicode(attribute: str) -> ApiProblem:
    return bad_request(
        f"{attribute} holds a string that is not valid Unicode (a lone surrogate such as \\ud800)",
        [
            ValidationError(
                attribute, "batch_operation.unicode.invalid", "strings must be valid Unicode"
            )
        ],
    )


def _invalid(prefix: str, name: str, message: str) -> ValidationError:
    return ValidationError(f"{prefix}.{name}", f"batch_operation.{name}.invalid", message)
