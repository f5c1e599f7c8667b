"""Figure 2: REST reads via batchd's gateway, next to a bare aiohttp handler and grpc-gateway."""

from __future__ import annotations

import importlib.util
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from benchmarks import grpc_gateway
from benchmarks.fixtures import copy_database, populated_database, some_operation_id
from benchmarks.loadgen import Load, wrk_get
from benchmarks.prerequisites import grpc_gateway_buildable
from benchmarks.processes import SUBJECT_CORE, python_module, running, wait_port
from benchmarks.results import Figure, Plan, Row, Series, Target
from benchmarks.service_process import NO_UPSTREAM, batchd_service
from tests.processes import TOKEN, free_port

CONNECTIONS = 32


def gateway_problem() -> str | None:
    """None when batchd's REST gateway can be started, else why not."""
    if importlib.util.find_spec("gateway") is None:
        return "batchd's gateway is not importable yet (python -m gateway): its rows are skipped"
    return None


@contextmanager
def batchd_gateway(grpc_address: str, log: Path) -> Iterator[str]:
    """`python -m gateway` in front of `grpc_address`; yields its base URL."""
    port = free_port()
    env = {
        "BATCH_HTTP_ADDRESS": f"127.0.0.1:{port}",
        "BATCH_GRPC_TARGET": grpc_address,
        "BATCH_LOG_LEVEL": "WARNING",
    }
    with running(python_module("gateway"), SUBJECT_CORE, log, env) as child:
        wait_port(child, port, log)
        yield f"http://127.0.0.1:{port}"


@contextmanager
def go_gateway(binary: Path, grpc_address: str, log: Path) -> Iterator[str]:
    port = free_port()
    command = [str(binary), f"-listen=127.0.0.1:{port}", f"-backend={grpc_address}"]
    with running(command, SUBJECT_CORE, log) as child:
        wait_port(child, port, log)
        yield f"http://127.0.0.1:{port}"


@contextmanager
def bare_handler(body: bytes, work: Path) -> Iterator[str]:
    body_file = work / "operation.json"
    body_file.write_bytes(body)
    port = free_port()
    log = work / "logs" / "bare-http.log"
    command = python_module("benchmarks.bare_http", str(port), str(body_file))
    with running(command, SUBJECT_CORE, log) as child:
        wait_port(child, port, log)
        yield f"http://127.0.0.1:{port}"


def get_json(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def measure(plan: Plan, work: Path) -> Figure:
    figure = Figure(2, "REST read: GET /v1/batch_operations/{id} requests/s (wrk)")
    missing = [problem for problem in (gateway_problem(), grpc_gateway_buildable()) if problem]
    figure.skipped.extend(missing)
    if len(missing) == 2:
        return figure
    load = Load(CONNECTIONS, 1, plan.load_seconds, plan.warmup_seconds)
    database = copy_database(populated_database(plan.main_stored), work / "rest.db")
    operation_id = some_operation_id(database)
    logs = work / "logs"
    with ExitStack() as stack:
        service = stack.enter_context(
            batchd_service(
                f"sqlite+aiosqlite:///{database}", NO_UPSTREAM, logs / "rest-service.log"
            )
        )
        bases: dict[str, str] = {}
        if gateway_problem() is None:
            bases["batchd gateway"] = stack.enter_context(
                batchd_gateway(service.address, logs / "gateway.log")
            )
        if grpc_gateway_buildable() is None:
            binary = grpc_gateway.build(work / "grpc-gateway")
            bases["grpc-gateway (Go)"] = stack.enter_context(
                go_gateway(binary, service.address, logs / "grpc-gateway.log")
            )
        path = f"/v1/batch_operations/{operation_id}"
        # The bare handler answers what the first REST subject answers, byte for byte.
        body = get_json(next(iter(bases.values())) + path)
        bases["bare aiohttp handler"] = stack.enter_context(bare_handler(body, work))
        rates = {name: Series(name, "requests/s") for name in bases}
        p50 = {name: Series(f"{name} p50", "ms") for name in bases}
        p99 = {name: Series(f"{name} p99", "ms") for name in bases}
        for _ in range(plan.repeats):
            for name, base in bases.items():
                result = wrk_get(base + path, TOKEN, load)
                rates[name].samples.append(result.per_second)
                p50[name].samples.append(result.p50_ms or 0.0)
                p99[name].samples.append(result.p99_ms or 0.0)

    def row(name: str, ceiling: str | None, target: Target | None = None) -> Row:
        latency = {"p50": p50[name], "p99": p99[name]}
        label = name if ceiling is None else f"{name} vs {ceiling}"
        return Row(label, rates[name], rates[ceiling] if ceiling else None, target, latency)

    figure.rows.append(row("bare aiohttp handler", None))
    if "grpc-gateway (Go)" in rates:
        figure.rows.append(row("grpc-gateway (Go)", "bare aiohttp handler"))
    if "batchd gateway" in rates:
        figure.rows.append(row("batchd gateway", "bare aiohttp handler"))
        if "grpc-gateway (Go)" in rates:
            figure.rows.append(row("batchd gateway", "grpc-gateway (Go)", Target(">=", 0.9)))
    figure.notes.append(
        f"wrk: 1 thread, {CONNECTIONS} connections, {plan.load_seconds:g} s after a "
        f"{max(1, round(plan.warmup_seconds))} s warm-up; "
        "gateways and service share the subject core"
    )
    return figure
