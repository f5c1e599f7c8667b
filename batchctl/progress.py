"""A live progress bar over a WatchBatch stream: done/total, rate, outcomes."""

from __future__ import annotations

from collections.abc import Iterable

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

from batchctl.outcome import batch_status_name
from batchctl.render import outcomes
from batchd.v1 import batch_pb2


class RateColumn(ProgressColumn):
    """Finished operations per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} ops/s" if speed else "-- ops/s", style="progress.data.speed")


class OutcomesColumn(ProgressColumn):
    """The batch's outcome counts, in the summary's words."""

    def render(self, task: Task) -> Text:
        batch: batch_pb2.Batch = task.fields["batch"]
        return outcomes(batch)


def follow(events: Iterable[batch_pb2.WatchBatchResponse], console: Console) -> None:
    """Shows the stream's progress until it ends. Every event carries the batch's
    outcome counts, so operations that ended before the watch began count too."""
    with Progress(
        TextColumn("{task.description:<11}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        OutcomesColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = None
        for event in events:
            batch = event.batch
            if task is None:
                # Started at the current count, so earlier work does not inflate the rate.
                task = progress.add_task(
                    batch_status_name(batch.status),
                    total=batch.batch_operations_count,
                    completed=batch.finished_batch_operations_count,
                    batch=batch,
                )
            progress.update(
                task,
                description=batch_status_name(batch.status),
                completed=batch.finished_batch_operations_count,
                batch=batch,
            )
