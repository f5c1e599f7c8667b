"""A live progress bar over a WatchBatch stream: finished/total, rate, the finished
operations' outcomes in the summary's words (`34 succeeded, 12 completed with 5xx`), and
whether the batch is being held back."""

from __future__ import annotations

from collections import Counter
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

from batchctl.outcome import batch_status_name, finished, outcome
from batchctl.render import held_back_note, outcome_counts
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
    before the watch began, so their outcomes are counted too.
    """
    outcomes: dict[str, str] = {}
    with Progress(
        TextColumn("{task.description:<11}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("finished"),
        RateColumn(),
        OutcomesColumn(outcomes),
        TimeElapsedColumn(),
        TextColumn("[yellow]{task.fields[held_back]}"),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = None
        for event in events:
            batch = event.batch
            if task is None:
                if batch.finished_batch_operations_count:
                    _count(outcomes, operations_so_far())
                # Started at the current count, so earlier work does not inflate the rate.
                task = progress.add_task(
                    batch_status_name(batch.status),
                    total=batch.batch_operations_count,
                    completed=batch.finished_batch_operations_count,
                    held_back="",
                )
            if event.HasField("batch_operation"):
                _count(outcomes, [event.batch_operation])
            progress.update(
                task,
                description=batch_status_name(batch.status),
                completed=batch.finished_batch_operations_count,
                held_back=held_back_note(batch),
            )


class OutcomesColumn(ProgressColumn):
    """The finished operations' outcomes, counted by operation id."""

    def __init__(self, outcomes: dict[str, str]) -> None:
        super().__init__()
        self.outcomes = outcomes

    def render(self, task: Task) -> Text:
        return outcome_counts(Counter(self.outcomes.values()))


def _count(outcomes: dict[str, str], operations: Iterable[batch_pb2.BatchOperation]) -> None:
    outcomes.update((op.id, outcome(op)) for op in operations if finished(op))
