"""Output for people (rich tables, a summary line) and for programs (JSON lines).

JSON follows the proto3 JSON mapping with the proto's field names, as grpcurl
prints it, so scripts see the same shapes as any other gRPC client.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.table import Table
from rich.text import Text

from batchctl.outcome import batch_status_name, operation_status_name, succeeded
from batchd.json_values import as_exact
from batchd.rest_objects import operation_object
from batchd.v1 import batch_pb2
from batchd.vocabulary import METHOD_NAMES

# The statuses' own names, as `--status` takes them: a completed operation got a
# response, whatever its class ("completed with 4xx"); failed means no response.
_ENDED = ("failed", "timed_out", "canceled")
_CLASSES = ("2xx", "3xx", "4xx", "5xx")


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


def batch_line(batch: batch_pb2.Batch) -> str:
    return (
        f"{batch.id}  {batch_status_name(batch.status)}  "
        f"{batch.finished_batch_operations_count}/{batch.batch_operations_count} finished"
    )


def outcomes(batch: batch_pb2.Batch) -> Text:
    """`7 completed (5 with 2xx, 2 with 4xx), 1 failed, 2 unfinished`: the batch's
    outcome counts, those that are not zero."""
    counts = batch.outcome_counts
    parts: list[tuple[str, str]] = []
    if counts.completed:
        classes = {name: getattr(counts, f"responses_{name}") for name in _CLASSES}
        shown = ", ".join(f"{n} with {name}" for name, n in classes.items() if n)
        style = "green" if classes["2xx"] == counts.completed else "red"
        parts.append((f"{counts.completed} completed ({shown})", style))
    for name in _ENDED:
        if number := getattr(counts, name):
            parts.append((f"{number} {name}", "red"))
    if unfinished := batch.batch_operations_count - batch.finished_batch_operations_count:
        parts.append((f"{unfinished} unfinished", ""))
    text = Text()
    for index, (part, style) in enumerate(parts):
        text.append(", " if index else "")
        text.append(part, style=style)
    return text


def summary(batch: batch_pb2.Batch) -> Text:
    """`Batch <id> completed: 10 operations: 9 completed (8 with 2xx, 1 with 4xx), 1 failed`."""
    text = Text(
        f"Batch {batch.id} {batch_status_name(batch.status)}: "
        f"{batch.batch_operations_count} operations: "
    )
    return text.append_text(outcomes(batch))


def operations_table(operations: Sequence[batch_pb2.BatchOperation]) -> Table:
    table = _table("#", "method", "path", "status", "response", "failure reason")
    for operation in operations:
        table.add_row(
            str(operation.position),
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
