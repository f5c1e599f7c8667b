"""Checks of API requests, reporting every problem at once as field violations."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from batchd.json_values import MAX_DEPTH, TooDeep, from_struct, storable
from batchd.messages import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, STORED_VALUE_GROWTH, read_back_size
from batchd.v1 import batch_pb2
from batchd.vocabulary import HTTP_METHODS, METHOD_NAMES
from service.engine.urls import path_problem
from service.errors import ApiError, Violation, invalid, not_found
from service.models import MAX_IDEMPOTENCY_KEY_LENGTH
from service.store import Ordering, PageRequest


@dataclass(frozen=True)
class BatchLimits:
    """What one batch may hold: operations, and bytes per operation (batchd/messages.py);
    and how many of its operations may run at once unless it asks for fewer."""

    max_operations: int
    max_operation_bytes: int
    max_in_flight_per_batch: int


@dataclass(frozen=True)
class NewOperation:
    http_method: str
    path: str
    query_params: dict[str, Any] | None
    body: dict[str, Any] | None


def new_operations(batch: batch_pb2.Batch, limits: BatchLimits) -> list[NewOperation]:
    """The operations of a create request, or an ApiError naming every problem."""
    count = len(batch.batch_operations)
    if count == 0:
        raise invalid(
            "batch.invalid",
            [
                Violation(
                    "batch_operations",
                    "batch.batch_operations.blank",
                    "a batch needs at least one operation",
                )
            ],
        )
    if count > limits.max_operations:
        raise invalid(
            "batch.invalid",
            [
                Violation(
                    "batch_operations",
                    "batch.batch_operations.too_long",
                    f"a batch holds at most {limits.max_operations} operations, not {count}",
                )
            ],
        )
    violations: list[Violation] = []
    result = [
        _new_operation(index, op, limits.max_operation_bytes, violations)
        for index, op in enumerate(batch.batch_operations)
    ]
    if violations:
        raise invalid("batch.invalid", violations)
    return result


def _new_operation(
    index: int, operation: batch_pb2.BatchOperation, max_bytes: int, violations: list[Violation]
) -> NewOperation:
    prefix = f"batch_operations[{index}]"
    method = METHOD_NAMES.get(operation.http_method)
    if method is None:
        violations.append(
            Violation(
                f"{prefix}.http_method",
                "batch_operation.http_method.invalid",
                f"http_method must be one of {', '.join(sorted(HTTP_METHODS))}",
            )
        )
    if not operation.path:
        violations.append(
            Violation(f"{prefix}.path", "batch_operation.path.blank", "path is required")
        )
    elif problem := path_problem(operation.path):
        violations.append(Violation(f"{prefix}.path", "batch_operation.path.invalid", problem))
    query_params = _json_object(operation, "query_params", prefix, violations)
    body = _json_object(operation, "body", prefix, violations)
    if (size := read_back_size(operation, query_params, body, max_bytes)) > max_bytes:
        violations.append(
            Violation(
                prefix,
                "batch_operation.too_large",
                f"this operation takes {size} bytes as a message and may take at most "
                f"{max_bytes}, so that it and its stored response fit in one reply "
                f"(small JSON values take up to {STORED_VALUE_GROWTH} times their text "
                "as a message)",
            )
        )
    return NewOperation(method or "", operation.path, query_params, body)


def _json_object(
    operation: batch_pb2.BatchOperation, name: str, prefix: str, violations: list[Violation]
) -> dict[str, Any] | None:
    if not operation.HasField(name):
        return None
    try:
        value = from_struct(getattr(operation, name), MAX_DEPTH)
    except TooDeep:
        violations.append(
            Violation(
                f"{prefix}.{name}",
                f"batch_operation.{name}.too_deep",
                f"{name} must nest at most {MAX_DEPTH} levels",
            )
        )
        return None
    if not storable(value):
        violations.append(
            Violation(
                f"{prefix}.{name}",
                f"batch_operation.{name}.invalid",
                f"{name} must not contain NUL characters or unpaired surrogates",
            )
        )
        return None
    return value


# Metadata as Stripe allows it: enough labels to find a batch by, never a payload.
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_CHARS = 40
MAX_METADATA_VALUE_CHARS = 500


def metadata(labels: Mapping[str, str], kind: str = "batch") -> dict[str, str]:
    """A batch's metadata (or a list's filter on it, `kind` "list"), checked: keys of
    1 to 40 characters without brackets (REST filters spell a key `metadata[key]`),
    values of at most 500; no NUL, which PostgreSQL's JSONB cannot hold."""
    if len(labels) > MAX_METADATA_KEYS:
        message = f"metadata holds at most {MAX_METADATA_KEYS} keys, not {len(labels)}"
        raise invalid(
            f"{kind}.invalid", [Violation("metadata", f"{kind}.metadata.too_many_keys", message)]
        )
    violations = [
        problem for key, value in sorted(labels.items()) for problem in _label_problems(key, value)
    ]
    if violations:
        raise invalid(f"{kind}.invalid", [_with_kind(kind, v) for v in violations])
    return dict(labels)


def _label_problems(key: str, value: str) -> list[Violation]:
    field = f"metadata[{key[: MAX_METADATA_KEY_CHARS + 10]}]"
    problems = []
    if not key:
        problems.append(Violation(field, "metadata.key.blank", "a metadata key must not be empty"))
    elif len(key) > MAX_METADATA_KEY_CHARS:
        message = f"a metadata key has at most {MAX_METADATA_KEY_CHARS} characters, not {len(key)}"
        problems.append(Violation(field, "metadata.key.too_long", message))
    elif "[" in key or "]" in key or "\x00" in key:
        message = "a metadata key must not contain square brackets or NUL characters"
        problems.append(Violation(field, "metadata.key.invalid", message))
    if len(value) > MAX_METADATA_VALUE_CHARS:
        message = (
            f"a metadata value has at most {MAX_METADATA_VALUE_CHARS} characters, not {len(value)}"
        )
        problems.append(Violation(field, "metadata.value.too_long", message))
    elif "\x00" in value:
        message = "a metadata value must not contain NUL characters"
        problems.append(Violation(field, "metadata.value.invalid", message))
    return problems


def _with_kind(kind: str, violation: Violation) -> Violation:
    return Violation(violation.field, f"{kind}.{violation.code}", violation.message)


def execution_options(options: batch_pb2.ExecutionOptions) -> batch_pb2.ExecutionOptions:
    if options.max_concurrency < 0:
        raise invalid(
            "batch.invalid",
            [
                Violation(
                    "execution_options.max_concurrency",
                    "batch.execution_options.max_concurrency.invalid",
                    "max_concurrency must be 0 (the server's limit) or more",
                )
            ],
        )
    return options


def in_flight_limit(options: batch_pb2.ExecutionOptions, limits: BatchLimits) -> int:
    """How many of a batch's operations may run at once, across the fleet."""
    if options.sequential:
        return 1
    return min(
        options.max_concurrency or limits.max_in_flight_per_batch, limits.max_in_flight_per_batch
    )


def idempotency_key(raw: str) -> str:
    """A create's idempotency key (its request_id; REST: Idempotency-Key): at most
    200 printable ASCII characters, as the gateway takes them; "" means none."""
    if len(raw) > MAX_IDEMPOTENCY_KEY_LENGTH:
        code = "too_long"
        message = (
            f"request_id (Idempotency-Key) must be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters"
        )
    elif not (raw.isascii() and raw.isprintable()):
        code, message = "invalid", "request_id (Idempotency-Key) must be printable ASCII"
    else:
        return raw
    raise invalid("batch.invalid", [Violation("request_id", f"batch.request_id.{code}", message)])


# How every stored id is written (str of a UUID): such an id is its own canonical form,
# told by a match for a sixth of what parsing it costs on every read.
_CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def object_id(kind: str, raw: str) -> str:
    """A canonical UUID string; anything else names no object, so NOT_FOUND."""
    if _CANONICAL_ID.fullmatch(raw):
        return raw
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise not_found(kind, raw[:100]) from None


# Ids one list filters by: far more than a page, and well within every database's
# limit of bound variables.
MAX_FILTER_IDS = 1000


class ListRequest(Protocol):
    """What the List RPCs' requests share; each names its id filter differently."""

    page_size: int
    page: int
    order_by: str

    @property
    def statuses(self) -> Sequence[int]: ...


@dataclass(frozen=True)
class ListQuery:
    ids: list[str]
    statuses: list[str]
    page: PageRequest


def list_query(
    request: ListRequest,
    ids_field: str,
    status_names: Mapping[Any, str],
    by_position: bool = False,
) -> ListQuery:
    """A List RPC's filters and page, checked; `by_position`: rows that have a
    position (operations) may be ordered by it."""
    page = page_request(request.page_size, request.page, request.order_by, by_position)
    ids = filter_ids(ids_field, getattr(request, ids_field))
    return ListQuery(ids, enum_names(request.statuses, status_names, "statuses"), page)


def filter_ids(field: str, raw_ids: Sequence[str]) -> list[str]:
    if len(raw_ids) > MAX_FILTER_IDS:
        message = f"at most {MAX_FILTER_IDS} ids, not {len(raw_ids)}"
        raise invalid("list.invalid", [Violation(field, f"{field}.too_long", message)])
    ids, violations = [], []
    for index, raw in enumerate(raw_ids):
        try:
            ids.append(str(uuid.UUID(raw)))
        except ValueError:
            violations.append(Violation(f"{field}[{index}]", f"{field}.invalid", "must be a UUID"))
    if violations:
        raise invalid("list.invalid", violations)
    return ids


def page_request(
    page_size: int, page: int, order_by: str, by_position: bool = False
) -> PageRequest:
    violations = []
    limit = page_size or DEFAULT_PAGE_SIZE
    if not 1 <= limit <= MAX_PAGE_SIZE:
        violations.append(
            Violation("page_size", "list.limit.invalid", f"must be between 1 and {MAX_PAGE_SIZE}")
        )
    number = page or 1
    if number < 1:
        violations.append(Violation("page", "list.page.invalid", "must be 1 or more"))
    ordering = _ordering(order_by, violations, by_position)
    if violations:
        raise invalid("list.invalid", violations)
    return PageRequest(limit=limit, page=number, ordering=ordering)


def page_too_large() -> ApiError:
    """A page whose stored responses add up to more than one reply may carry
    (the size policy is batchd/messages.py's)."""
    violation = Violation(
        "page_size",
        "list.limit.too_large",
        "these operations' stored responses add up to more than one reply carries; ask for fewer",
    )
    return invalid("list.invalid", [violation])


_ORDER_COLUMNS = {"create_time": "created_at", "update_time": "updated_at"}
_POSITION_ORDER = {"position": "position"}


def _ordering(order_by: str, violations: list[Violation], by_position: bool) -> Ordering:
    if not order_by.strip():
        return Ordering()
    columns = {**_ORDER_COLUMNS, **(_POSITION_ORDER if by_position else {})}
    parts = order_by.split()
    column = columns.get(parts[0])
    direction = parts[1] if len(parts) == 2 else "asc" if len(parts) == 1 else ""
    if column is None or direction not in ("asc", "desc"):
        names = " or ".join([", ".join(list(columns)[:-1]), list(columns)[-1]])
        violations.append(
            Violation("order_by", "list.sort.invalid", f"must be {names}, then asc or desc")
        )
        return Ordering()
    return Ordering(column=column, descending=direction == "desc")  # type: ignore[arg-type]


def enum_names(values: Sequence[int], names: Mapping[Any, str], field: str) -> list[str]:
    violations = [
        Violation(f"{field}[{index}]", f"{field}.invalid", "unknown status")
        for index, value in enumerate(values)
        if value not in names
    ]
    if violations:
        raise invalid("list.invalid", violations)
    return [names[value] for value in values]
