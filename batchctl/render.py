"""Output for people (rich tables, a summary line) and for programs (JSON lines).

JSON follows the proto3 JSON mapping with the proto's field names, as grpcurl
prints it, so scripts see the same shapes as any other gRPC client.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.table import Table
from rich.text import Text

from batchctl.outcome import (
    batch_status_name,
    in_order,
    operation_status_name,
    ran,
    succeeded,
    tally,
)
from batchd.json_values import as_exact
from batchd.rest_objects import operation_object
from batchd.v1 import batch_pb2
from batchd.vocabulary import METHOD_NAMES


def json_line(message: Message) -> None:
    """One message as one JSON line, flushed so a reader sees it at once."""
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    sys.stdout.write(json.dumps(_whole_numbers(data), separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _whole_numbers(data: Any) -> Any:
    """Struct numbers are doubles; shown as sent, a `1` stays `1`, not `1.0`.

    Only Struct and Value fields hold floats in this API, so no other field changes.
    """
    if isinstance(data, dict):
        return {key: _whole_numbers(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_whole_numbers(item) for item in data]
    if isinstance(data, float):
        return as_exact(data)
    return data


def operation_line(operation: batch_pb2.BatchOperation) -> str:
    """One operation as the REST contract's batch_operation JSON, on one line: what
    `GET /v1/batches/{id}/results` exports."""
    return json.dumps(operation_object(operation), separators=(",", ":")) + "\n"


def outcomes(batch: batch_pb2.Batch) -> Text:
    """The batch's outcome counts (Batch.outcome_counts, no operations read) in the
    summary's words: `5 succeeded, 2 completed with 4xx, 1 failed`."""
    counts = batch.outcome_counts
    return outcome_counts(
        Counter(
            {
                "succeeded": counts.responses_2xx,
                **{f"completed with {n}xx": getattr(counts, f"responses_{n}xx") for n in (3, 4, 5)},
                "failed": counts.failed,
                "timed_out": counts.timed_out,
                "canceled": counts.canceled,
            }
        )
    )


_HOLD_REASONS = {batch_pb2.HeldBack.REASON_UPSTREAM_PAUSE: "the upstream asked for a pause"}


def held_back_note(batch: batch_pb2.Batch) -> str:
    """`held back until 13:05:02 (the upstream asked for a pause)`, in local
    time; empty when the batch is not held back."""
    if not batch.HasField("held_back"):
        return ""
    until = batch.held_back.until.ToDatetime(tzinfo=UTC).astimezone()
    reason = _HOLD_REASONS.get(batch.held_back.reason, "reason unknown")
    return f"held back until {until:%H:%M:%S} ({reason})"


def summary(batch: batch_pb2.Batch) -> Text:
    """What happened, in the words of `outcome`: `Batch <id> canceled: 200 operations,
    46 ran (34 succeeded, 12 completed with 5xx), 154 canceled`."""
    counts = tally(batch.batch_operations)
    executed = ran(counts)
    text = Text(
        f"Batch {batch.id} {batch_status_name(batch.status)}: "
        f"{len(batch.batch_operations)} operations, {executed.total()} ran"
    )
    if executed:
        text.append(" (")
        text.append_text(outcome_counts(executed))
        text.append(")")
    not_run = counts - executed
    if not_run:
        text.append(", ")
        text.append_text(outcome_counts(not_run))
    return text


def outcome_counts(counts: Counter[str]) -> Text:
    """`34 succeeded, 12 completed with 5xx`: green for success, red for the rest."""
    text = Text()
    for index, (name, count) in enumerate(in_order(counts)):
        if index:
            text.append(", ")
        text.append(f"{count} {name}", style="green" if name == "succeeded" else "red")
    return text


def operations_table(operations: Sequence[batch_pb2.BatchOperation]) -> Table:
    table = _table("#", "id", "method", "path", "status", "response", "failure reason")
    for operation in operations:
        table.add_row(
            str(operation.position),
            operation.id,
            METHOD_NAMES.get(operation.http_method, "UNSPECIFIED"),
            operation.path,
            Text(
                operation_status_name(operation.status),
                style="green" if succeeded(operation) else "red",
            ),
            str(operation.response_status) if operation.HasField("response_status") else "",
            operation.failure_reason,
        )
    return table


def batches_table(batches: Sequence[batch_pb2.Batch]) -> Table:
    table = _table("id", "status", "finished", "outcomes", "created (UTC)")
    for batch in batches:
        table.add_row(
            batch.id,
            batch_status_name(batch.status),
            f"{batch.finished_batch_operations_count}/{batch.batch_operations_count}",
            outcomes(batch),
            batch.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table


def _table(*headers: str) -> Table:
    table = Table()
    for header in headers:
        # Ids must stay whole and on one line for copying; paths fold, never cut.
        if header == "id":
            table.add_column(header, no_wrap=True, min_width=36)
        else:
            table.add_column(header, overflow="fold")
    return table
