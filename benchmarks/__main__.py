"""`python -m benchmarks [--quick] [--only 1,3] [--install]`: a table, JSON and a PNG chart.

See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack

from benchmarks import create, execution, growth, read, rest
from benchmarks.prerequisites import MissingTools, ensure_tools
from benchmarks.processes import PINNED, ROOT, pin_self_to_load_core
from benchmarks.report import table, write_chart, write_json
from benchmarks.results import FULL, QUICK, Figure, Plan, Series
from benchmarks.upstream_nginx import nginx_upstream

RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "var" / "bench" / "run"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat")
    parser.add_argument("--only", default="1,2,3,4,5,6", help="figures to run, e.g. 1,3")
    parser.add_argument(
        "--install", action="store_true", help="apt-get install missing tools (when root)"
    )
    return parser.parse_args()


def attempt(number: int, title: str, measure: Callable[[], Figure]) -> Figure:
    """Runs one figure; a failure is reported as such and the other figures go on."""
    print(f"bench: figure {number}: {title} ...", flush=True)
    started = time.monotonic()
    try:
        figure = measure()
    except Exception as error:
        traceback.print_exc()
        figure = Figure(number, title)
        figure.skipped.append(f"FAILED: {type(error).__name__}: {str(error)[-800:]}")
    print(f"bench: figure {number} took {time.monotonic() - started:.0f} s", flush=True)
    return figure


def run(plan: Plan, only: set[int]) -> list[Figure]:
    figures: list[Figure] = []
    read_bare: Series | None = None
    execute_bare: Series | None = None
    reads: dict[int, Series] = {}
    executions: dict[int, Series] = {}

    def read_figure() -> Figure:
        nonlocal read_bare, reads
        figure, read_bare, reads = read.measure(plan, WORK)
        return figure

    def execute_figure(upstream: str) -> Figure:
        nonlocal execute_bare, executions
        figure, execute_bare, executions = execution.measure(plan, WORK, upstream)
        return figure

    with ExitStack() as stack:
        upstream = stack.enter_context(nginx_upstream(WORK))
        steps: list[tuple[int, str, Callable[[], Figure]]] = [
            (1, "gRPC read", read_figure),
            (2, "REST read", lambda: rest.measure(plan, WORK)),
            (3, "execution", lambda: execute_figure(upstream)),
            (4, "create", lambda: create.measure(plan, WORK, upstream)),
            (5, "growth", lambda: growth.figure(read_bare, reads, execute_bare, executions)),
            (6, "PostgreSQL replicas", lambda: execution.measure_postgres(plan, WORK, upstream)),
        ]
        for number, title, measure in steps:
            if number in only:
                figures.append(attempt(number, title, measure))
    return figures


def main() -> None:
    args = parse_args()
    plan = QUICK if args.quick else FULL
    only = {int(part) for part in args.only.split(",") if part.strip()}
    try:
        ensure_tools(install=args.install)
    except MissingTools as error:
        print(f"bench: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    pin_self_to_load_core()
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "logs").mkdir(parents=True)
    started = time.time()
    figures = run(plan, only)
    title = (
        f"batchd bench ({plan.mode}, {plan.repeats} repeat(s), "
        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(started))})"
    )
    print(f"\n{title}: medians [min .. max]; ratios pair samples of the same repeat")
    print(table(figures))
    document = {
        "title": title,
        "plan": plan.summary(),
        "machine": {
            "cpus": os.cpu_count(),
            "pinned": PINNED,
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "started": started,
        "seconds": time.time() - started,
        "figures": [figure.summary() for figure in figures],
    }
    write_json(RESULTS / "latest.json", document)
    write_chart(RESULTS / "latest.png", figures, title)
    print(
        f"\nbench: wrote {RESULTS / 'latest.json'} and latest.png in {time.time() - started:.0f} s"
    )
    if any(reason.startswith("FAILED") for figure in figures for reason in figure.skipped):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
