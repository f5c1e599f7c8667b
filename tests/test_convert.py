"""Rows as messages: convert.py fills fields in place for speed, and must build exactly the
message that building each part apart and copying it in (to_struct, to_value) builds."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from batchd.json_values import to_struct, to_value
from batchd.v1 import batch_pb2
from batchd.vocabulary import BATCH_STATUSES, HTTP_METHODS, OPERATION_STATUSES
from service import convert

texts = st.text(max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=12,
)
objects = st.dictionaries(texts, json_values, max_size=4)
times = st.floats(0, 2**33, allow_nan=False)
OperationRow = namedtuple(
    "OperationRow",
    "id batch_id http_method path status attempts position created_at updated_at "
    "query_params body response_status response_body failure_reason",
)
BatchRow = namedtuple(
    "BatchRow",
    "id status operations_count finished_count created_at updated_at "
    "sequential stop_on_failure max_concurrency retry_of labels",
)


def timestamp(unix_seconds: float) -> Any:
    return {"seconds": int(unix_seconds), "nanos": int((unix_seconds % 1) * 1_000_000_000)}


def reference_operation(row: Any) -> batch_pb2.BatchOperation:
    message = batch_pb2.BatchOperation(
        id=row.id,
        batch_id=row.batch_id,
        http_method=HTTP_METHODS[row.http_method],
        path=row.path,
        status=OPERATION_STATUSES[row.status],
        attempts=row.attempts,
        position=row.position,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
    )
    if row.query_params is not None:
        message.query_params.CopyFrom(to_struct(row.query_params))
    if row.body is not None:
        message.body.CopyFrom(to_struct(row.body))
    if row.response_status is not None:
        message.response_status = row.response_status
        message.response_body.CopyFrom(to_value(row.response_body))
    if row.failure_reason is not None:
        message.failure_reason = row.failure_reason
    return message


@given(
    st.sampled_from(sorted(HTTP_METHODS)),
    st.sampled_from(sorted(OPERATION_STATUSES)),
    times,
    times,
    st.none() | objects,
    st.none() | objects,
    st.none() | st.integers(100, 599),
    json_values,
    st.none() | texts,
)
def test_an_operation_row_reads_as_built_part_by_part(
    method: str,
    status: str,
    created: float,
    updated: float,
    query: Any,
    body: Any,
    response_status: Any,
    response_body: Any,
    reason: Any,
) -> None:
    row = OperationRow(
        "op", "batch", method, "/p", status, 1, 2, created, updated,
        query, body, response_status, response_body, reason,
    )  # fmt: skip
    built, reference = convert.operation_message(row), reference_operation(row)
    assert built == reference
    assert built.SerializeToString(deterministic=True) == reference.SerializeToString(
        deterministic=True
    )
    for name in ("query_params", "body", "response_body"):
        assert built.HasField(name) == reference.HasField(name)


@given(
    st.sampled_from(sorted(BATCH_STATUSES)),
    times,
    times,
    st.booleans(),
    st.booleans(),
    st.integers(0, 64),
    st.none() | texts,
    st.none() | st.dictionaries(texts, texts, max_size=3),
)
def test_a_batch_row_reads_as_built_part_by_part(
    status: str,
    created: float,
    updated: float,
    sequential: bool,
    stop: bool,
    concurrency: int,
    retry_of: Any,
    labels: dict[str, str] | None,
) -> None:
    row = BatchRow(
        "b", status, 3, 1, created, updated, sequential, stop, concurrency, retry_of, labels
    )
    reference = batch_pb2.Batch(
        id="b",
        status=BATCH_STATUSES[status],
        batch_operations_count=3,
        finished_batch_operations_count=1,
        create_time=timestamp(created),
        update_time=timestamp(updated),
        execution_options=batch_pb2.ExecutionOptions(
            sequential=sequential, stop_on_failure=stop, max_concurrency=concurrency
        ),
        retry_of=retry_of or "",
        metadata=labels or {},
        outcome_counts=batch_pb2.BatchOutcomeCounts(),
    )
    built = convert.batch_message(row)
    assert built == reference
    assert built.HasField("execution_options")
