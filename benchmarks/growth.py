"""Figure 5: whether reads and execution slow down as the operations table grows."""

from __future__ import annotations

from benchmarks.results import Figure, Row, Series, Target

# Cost must not grow with the table; 20% covers this shared machine's noise.
FLOOR = 0.8


def figure(
    read_bare: Series | None,
    reads: dict[int, Series],
    execute_bare: Series | None,
    executions: dict[int, Series],
) -> Figure:
    result = Figure(5, "Growth: figures 1 and 3 by stored operations")
    for name, bare, by_size in (
        ("gRPC read", read_bare, reads),
        ("execution", execute_bare, executions),
    ):
        if bare is None or not by_size:
            result.skipped.append(f"{name}: not measured in this run")
            continue
        for size, series in sorted(by_size.items()):
            result.rows.append(Row(f"{name}, {size:,} stored", series, bare))
        smallest, largest = min(by_size), max(by_size)
        result.rows.append(
            Row(
                f"{name}: {largest:,} vs {smallest:,} stored",
                by_size[largest],
                by_size[smallest],
                Target(">=", FLOOR),
            )
        )
    result.notes.append(
        f"the target: the largest table keeps at least {FLOOR:g} of the smallest's rate"
    )
    return result
