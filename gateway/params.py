"""Query parameters of the REST contract, checked and turned into gRPC request fields.

A parameter of the wrong form is a 400 here; values that are well-formed but
unacceptable (a limit of 500, an unknown status) are left to the service,
which reports them as validation errors.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TypeVar

from multidict import MultiMapping

from batchd.json_values import has_surrogate
from batchd.messages import DEFAULT_PAGE_SIZE
from batchd.v1 import batch_pb2
from gateway.errors import ValidationError, bad_request, unprocessable

# The range of the gRPC requests' int32 fields.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_SORT = re.compile(r"([a-z_]+):([a-z]+)")
_METADATA_KEY = re.compile(r"metadata\[(.*)\]", re.DOTALL)
_ORDER_COLUMNS = {"created_at": "create_time", "updated_at": "update_time", "position": "position"}

Query = MultiMapping[str]
Status = TypeVar("Status", batch_pb2.BatchStatus, batch_pb2.BatchOperationStatus)


@dataclass(frozen=True)
class Page:
    limit: int
    page: int
    order_by: str


def page_of(query: Query) -> Page:
    limit = _positive_int(query, "limit", DEFAULT_PAGE_SIZE)
    page = _positive_int(query, "page", 1)
    return Page(limit, page, _order_by(query.get("sort")))


def idempotency_key(headers: Mapping[str, str]) -> str:
    """The Idempotency-Key header, or "" (no key); the service limits its length."""
    key = headers.get("Idempotency-Key")
    if key is None:
        return ""
    # Printable ASCII, like any header value meant for machines; "" would mean no key.
    if not (key and key.isascii() and key.isprintable()):
        raise bad_request("Idempotency-Key must be a non-empty string of printable ASCII")
    return key


def array(query: Query, name: str) -> list[str]:
    """The values of `name[]`; the bare `name` form is refused so it is never ignored."""
    if name in query:
        raise bad_request(f"{name} is an array parameter: send it as {name}[]=...")
    return list(query.getall(f"{name}[]", ()))


def uuids(query: Query, name: str) -> list[str]:
    values = array(query, name)
    errors = [
        ValidationError(f"{name}[{index}]", f"list.{name}.invalid", f"{value[:50]!r} is not a UUID")
        for index, value in enumerate(values)
        if not _is_uuid(value)
    ]
    if errors:
        raise bad_request(f"{name}[] must hold UUIDs", errors)
    return values


def statuses(query: Query, enums: Mapping[str, Status], unspecified: Status) -> list[Status]:
    """Status filters; an unknown name goes as UNSPECIFIED for the service to report."""
    return [enums.get(value, unspecified) for value in array(query, "status")]


def metadata_filter(query: Query) -> dict[str, str]:
    """`metadata[key]=value` filters as {key: value}. The service checks keys and values;
    a key given twice (which value?) or the bare `metadata` is a 400 here."""
    if "metadata" in query:
        raise bad_request("metadata is an object parameter: send it as metadata[key]=value")
    wanted: dict[str, str] = {}
    for name, value in query.items():
        match = _METADATA_KEY.fullmatch(name)
        if match is None:
            if name.startswith("metadata["):
                raise bad_request(f"{name[:60]!r} is not of the form metadata[key]")
            continue
        key = match.group(1)
        if has_surrogate(key) or has_surrogate(value):
            raise bad_request(f"metadata[{key[:50]!r}] is not valid Unicode")
        if key in wanted:
            raise bad_request(f"metadata[{key[:50]}] is given more than once")
        wanted[key] = value
    return wanted


def expansions(query: Query, allowed: Collection[str]) -> set[str]:
    values = array(query, "expand")
    errors = [
        ValidationError(
            f"expand[{index}]",
            "expand.invalid",
            f"cannot expand {value[:50]!r}; expandable: {', '.join(sorted(allowed))}",
        )
        for index, value in enumerate(values)
        if value not in allowed
    ]
    if errors:
        raise bad_request("Unknown expand[] value", errors)
    return set(values)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _positive_int(query: Query, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw.strip()):
        raise bad_request(f"{name} must be an integer, not {raw[:50]!r}")
    value = int(raw)
    # 0 would read as "unset" in the gRPC request, and the fields are int32.
    problem = "must be 1 or more" if value < 1 else "is too large" if value > INT32_MAX else ""
    if problem:
        raise unprocessable(
            "list.invalid", [ValidationError(name, f"list.{name}.invalid", f"{name} {problem}")]
        )
    return value


def _order_by(raw: str | None) -> str:
    """`created_at:desc` as `create_time desc`; the service checks the order, and
    which list may use which column. A column the REST API does not name is
    refused here: passed on, a gRPC name (`create_time`) would be accepted."""
    if raw is None:
        return ""
    match = _SORT.fullmatch(raw.strip())
    if match is None:
        raise bad_request(f"sort must be column:order, such as created_at:desc, not {raw[:50]!r}")
    column, order = match.groups()
    if column not in _ORDER_COLUMNS:
        message = "must be created_at, updated_at or position (operations only), then asc or desc"
        raise unprocessable("list.invalid", [ValidationError("sort", "list.sort.invalid", message)])
    return f"{_ORDER_COLUMNS[column]} {order}"
