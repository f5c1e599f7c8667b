"""A live progress bar over a WatchBatch stream: done/total, rate, failures."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from batchctl.outcome import batch_status_name, finished, succeeded
from batchd.v1 import batch_pb2


class RateColumn(ProgressColumn):
    """Finished operations per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} ops/s" if speed else "-- ops/s", style="progress.data.speed")


def follow(
    events: Iterable[batch_pb2.WatchBatchResponse],
    console: Console,
    operations_so_far: Callable[[], Sequence[batch_pb2.BatchOperation]],
) -> None:
    """Shows the stream's progress until it ends.

    `operations_so_far` is called once if the batch had finished operations
    before the watch began, so their failures are counted too.
    """
    failures: set[str] = set()
    with Progress(
        TextColumn("{task.description:<11}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("[red]{task.fields[failures]} failed"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = None
        for event in events:
            batch = event.batch
            if task is None:
                if batch.finished_batch_operations_count:
                    failures.update(_failed_ids(operations_so_far()))
                # Started at the current count, so earlier work does not inflate the rate.
                task = progress.add_task(
                    batch_status_name(batch.status),
                    total=batch.batch_operations_count,
                    completed=batch.finished_batch_operations_count,
                    failures=len(failures),
                )
            if event.HasField("batch_operation"):
                failures.update(_failed_ids([event.batch_operation]))
            progress.update(
                task,
                description=batch_status_name(batch.status),
                completed=batch.finished_batch_operations_count,
                failures=len(failures),
            )


def _failed_ids(operations: Iterable[batch_pb2.BatchOperation]) -> set[str]:
    return {op.id for op in operations if finished(op) and not succeeded(op)}
