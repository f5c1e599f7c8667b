"""Figure 4: accepting CreateBatch with 1,000 operations, next to a bare executemany."""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.fixtures import copy_database, mixed_specs, populated_database
from benchmarks.processes import SUBJECT_CORE, python_module, run_pinned
from benchmarks.rest import batchd_gateway, gateway_problem
from benchmarks.results import Figure, Plan, Row, Series, Target
from benchmarks.service_process import (
    METADATA,
    TOKEN,
    batch_request,
    batchd_service,
    client,
    wait_completed,
)


def grpc_seconds(address: str, specs: list[dict[str, Any]], times: int) -> list[float]:
    """Times each CreateBatch; waits (untimed) for the batch to finish before the next."""
    request = batch_request(specs)
    seconds = []
    with client(address) as stub:
        for _ in range(times):
            started = time.perf_counter()
            created = stub.CreateBatch(request, metadata=METADATA)
            seconds.append(time.perf_counter() - started)
            wait_completed(stub, created.batch.id)
    return seconds


def rest_seconds(base: str, address: str, specs: list[dict[str, Any]], times: int) -> list[float]:
    body = json.dumps({"batch": {"batch_operations": specs}}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    seconds = []
    with client(address) as stub:
        for _ in range(times):
            request = urllib.request.Request(f"{base}/v1/batches", body, headers, method="POST")
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=60) as response:
                created = json.loads(response.read())
            seconds.append(time.perf_counter() - started)
            wait_completed(stub, created["id"])
    return seconds


def bare_seconds(database: Path, count: int, times: int) -> list[float]:
    command = python_module("benchmarks.bare_insert", str(database), str(count), str(times))
    return [float(value) for value in json.loads(run_pinned(command, SUBJECT_CORE))]


def measure(plan: Plan, work: Path, upstream: str) -> Figure:
    count = plan.create_operations
    figure = Figure(4, f"Create: seconds to accept one batch of {count:,} operations")
    specs = mixed_specs(count)
    fixture = populated_database(plan.main_stored)
    bare = Series("bare sqlite3 executemany", "s")
    over_grpc = Series("batchd CreateBatch (gRPC)", "s")
    over_rest = Series("batchd POST /v1/batches (REST)", "s")
    problem = gateway_problem()
    if problem:
        figure.skipped.append(problem)
    for repeat in range(plan.repeats):
        database = copy_database(fixture, work / "create-bare.db")
        bare.samples.append(
            statistics.median(bare_seconds(database, count, plan.creates_per_repeat))
        )
        database = copy_database(fixture, work / "create.db")
        log = work / "logs" / f"create-{repeat}.log"
        with ExitStack() as stack:
            service = stack.enter_context(
                batchd_service(f"sqlite+aiosqlite:///{database}", upstream, log)
            )
            times = grpc_seconds(service.address, specs, plan.creates_per_repeat)
            over_grpc.samples.append(statistics.median(times))
            if problem is None:
                gateway = stack.enter_context(
                    batchd_gateway(service, work / "logs" / f"create-gateway-{repeat}.log")
                )
                times = rest_seconds(gateway.url, service.address, specs, plan.creates_per_repeat)
                over_rest.samples.append(statistics.median(times))
    figure.rows.append(Row(bare.name, bare))
    figure.rows.append(Row(over_grpc.name, over_grpc, bare, Target("<=", 3)))
    if over_rest.samples:
        figure.rows.append(Row(over_rest.name, over_rest, bare, Target("<=", 3)))
    figure.notes.append(
        f"each repeat: median of {plan.creates_per_repeat} creates on a copy of the "
        f"{plan.main_stored:,}-operation file; half GETs with query_params, half POSTs with a body"
    )
    return figure
