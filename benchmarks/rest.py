"""Figure 2: REST reads via batchd's gateway, next to a bare aiohttp handler and grpc-gateway."""

from __future__ import annotations

import importlib.util
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks import grpc_gateway
from benchmarks.fixtures import copy_database, populated_database, some_operation_id
from benchmarks.loadgen import Load, wrk_get
from benchmarks.prerequisites import grpc_gateway_buildable
from benchmarks.processes import SUBJECT_CORE, free_port, python_module, running, wait_port
from benchmarks.results import Figure, Plan, Row, Series, Target
from benchmarks.service_process import NO_UPSTREAM, TOKEN, batchd_service

CONNECTIONS = 32


@dataclass(frozen=True)
class HttpServer:
    url: str
    pid: int


def gateway_problem() -> str | None:
    """None when batchd's REST gateway can be started, else why not."""
    if importlib.util.find_spec("gateway") is None:
        return "batchd's gateway is not importable yet (python -m gateway): its rows are skipped"
    return None


@contextmanager
def batchd_gateway(grpc_address: str, log: Path) -> Iterator[HttpServer]:
    """`python -m gateway` in front of `grpc_address`."""
    port = free_port()
    env = {
        "BATCH_HTTP_ADDRESS": f"127.0.0.1:{port}",
        "BATCH_GRPC_TARGET": grpc_address,
        "BATCH_LOG_LEVEL": "WARNING",
    }
    with running(python_module("gateway"), SUBJECT_CORE, log, env) as child:
        wait_port(child, port, log)
        yield HttpServer(f"http://127.0.0.1:{port}", child.pid)


@contextmanager
def go_gateway(binary: Path, grpc_address: str, log: Path) -> Iterator[HttpServer]:
    port = free_port()
    command = [str(binary), f"-listen=127.0.0.1:{port}", f"-backend={grpc_address}"]
    with running(command, SUBJECT_CORE, log) as child:
        wait_port(child, port, log)
        yield HttpServer(f"http://127.0.0.1:{port}", child.pid)


@contextmanager
def bare_handler(body: bytes, work: Path) -> Iterator[HttpServer]:
    body_file = work / "operation.json"
    body_file.write_bytes(body)
    port = free_port()
    log = work / "logs" / "bare-http.log"
    command = python_module("benchmarks.bare_http", str(port), str(body_file))
    with running(command, SUBJECT_CORE, log) as child:
        wait_port(child, port, log)
        yield HttpServer(f"http://127.0.0.1:{port}", child.pid)


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
        servers: dict[str, HttpServer] = {}
        if gateway_problem() is None:
            servers["batchd gateway"] = stack.enter_context(
                batchd_gateway(service.address, logs / "gateway.log")
            )
        if grpc_gateway_buildable() is None:
            binary = grpc_gateway.build(work / "grpc-gateway")
            servers["grpc-gateway (Go)"] = stack.enter_context(
                go_gateway(binary, service.address, logs / "grpc-gateway.log")
            )
        path = f"/v1/batch_operations/{operation_id}"
        # The bare handler answers what the first REST subject answers, byte for byte.
        body = get_json(next(iter(servers.values())).url + path)
        servers["bare aiohttp handler"] = stack.enter_context(bare_handler(body, work))
        rates = {name: Series(name, "requests/s") for name in servers}
        p50 = {name: Series(f"{name} p50", "ms") for name in servers}
        p99 = {name: Series(f"{name} p99", "ms") for name in servers}
        # Where each path's time goes: CPU per answered request, of the HTTP server
        # (a gateway or the bare handler) and of the gRPC service behind it.
        own_cpu = {name: Series(f"{name} CPU", "us/request") for name in servers}
        service_cpu = {name: Series(f"service CPU via {name}", "us/request") for name in servers}
        for _ in range(plan.repeats):
            for name, server in servers.items():
                watched = (server.pid, service.child.pid)
                result = wrk_get(server.url + path, TOKEN, load, watched)
                rates[name].samples.append(result.per_second)
                p50[name].samples.append(result.p50_ms or 0.0)
                p99[name].samples.append(result.p99_ms or 0.0)
                server_seconds, service_seconds = result.cpu_seconds
                own_cpu[name].samples.append(server_seconds * 1e6 / result.requests)
                service_cpu[name].samples.append(service_seconds * 1e6 / result.requests)

    def row(name: str, ceiling: str | None, target: Target | None = None) -> Row:
        extra = {"p50": p50[name], "p99": p99[name], "CPU": own_cpu[name]}
        if name != "bare aiohttp handler":
            extra["service CPU"] = service_cpu[name]
        label = name if ceiling is None else f"{name} vs {ceiling}"
        return Row(label, rates[name], rates[ceiling] if ceiling else None, target, extra)

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
