"""Figure 2: REST reads via batchd's gateways, next to a bare aiohttp handler and grpc-gateway.

batchd serves REST two ways: `python -m gateway` calling the service over gRPC, as
grpc-gateway does, and the all-in-one `batchd`, whose gateway calls its service
in-process. A third batchd row polls with the current ETag: what a poller pays when
nothing changed."""

from __future__ import annotations

import importlib.util
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import grpc_gateway
from benchmarks.fixtures import copy_database, populated_database, some_operation_id
from benchmarks.loadgen import Load, LoadError, Throughput, wrk_get
from benchmarks.prerequisites import grpc_gateway_buildable
from benchmarks.processes import SUBJECT_CORE, free_port, python_module, running, wait_port
from benchmarks.results import Figure, Plan, Row, Series, Target
from benchmarks.service_process import (
    NO_UPSTREAM,
    SERVICE_SETTINGS,
    TOKEN,
    RunningService,
    batchd_service,
)

CONNECTIONS = 32
BARE = "bare aiohttp handler"
GO = "grpc-gateway (Go)"
GATEWAY = "python -m gateway"
ALL_IN_ONE = "batchd (all-in-one)"
POLL = "batchd (all-in-one), If-None-Match"
BATCHD = Path(sys.executable).parent / "batchd"


@dataclass(frozen=True)
class HttpServer:
    url: str
    pid: int
    # The gRPC service behind it, when that is another process.
    service_pid: int | None = None


def gateway_problem() -> str | None:
    """None when batchd's REST gateway can be started, else why not."""
    if importlib.util.find_spec("gateway") is None:
        return "batchd's gateway is not importable yet (python -m gateway): its rows are skipped"
    return None


@contextmanager
def batchd_gateway(service: RunningService, log: Path) -> Iterator[HttpServer]:
    """`python -m gateway` in front of `service`."""
    port = free_port()
    env = {
        "BATCH_HTTP_ADDRESS": f"127.0.0.1:{port}",
        "BATCH_GRPC_TARGET": service.address,
        "BATCH_LOG_LEVEL": "WARNING",
    }
    with running(python_module("gateway"), SUBJECT_CORE, log, env) as child:
        wait_port(child, port, log)
        yield HttpServer(f"http://127.0.0.1:{port}", child.pid, service.child.pid)


@contextmanager
def all_in_one(database: Path, log: Path) -> Iterator[HttpServer]:
    """The `batchd` console script on its own copy of the database: its gateway calls
    its service in-process."""
    port = free_port()
    env = {
        **SERVICE_SETTINGS,
        "BATCH_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "BATCH_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "BATCH_HTTP_ADDRESS": f"127.0.0.1:{port}",
        "BATCH_GRPC_TARGET": "",
        "BATCH_UPSTREAM_URL": NO_UPSTREAM,
    }
    with running([str(BATCHD)], SUBJECT_CORE, log, env) as child:
        wait_port(child, port, log)
        yield HttpServer(f"http://127.0.0.1:{port}", child.pid)


@contextmanager
def go_gateway(binary: Path, service: RunningService, log: Path) -> Iterator[HttpServer]:
    port = free_port()
    command = [str(binary), f"-listen=127.0.0.1:{port}", f"-backend={service.address}"]
    with running(command, SUBJECT_CORE, log) as child:
        wait_port(child, port, log)
        yield HttpServer(f"http://127.0.0.1:{port}", child.pid, service.child.pid)


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


def get_json(url: str) -> tuple[bytes, str | None]:
    """The body of a read, and its ETag."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read()), response.headers.get("ETag")


def measure(plan: Plan, work: Path) -> Figure:
    figure = Figure(2, "REST read: GET /v1/batch_operations/{id} requests/s (wrk)")
    missing = [problem for problem in (gateway_problem(), grpc_gateway_buildable()) if problem]
    figure.skipped.extend(missing)
    if len(missing) == 2:
        return figure
    load = Load(CONNECTIONS, 1, plan.load_seconds, plan.warmup_seconds)
    populated = populated_database(plan.main_stored)
    database = copy_database(populated, work / "rest.db")
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
            servers[ALL_IN_ONE] = stack.enter_context(
                all_in_one(copy_database(populated, work / "rest-batchd.db"), logs / "batchd.log")
            )
            servers[GATEWAY] = stack.enter_context(batchd_gateway(service, logs / "gateway.log"))
        if grpc_gateway_buildable() is None:
            binary = grpc_gateway.build(work / "grpc-gateway")
            servers[GO] = stack.enter_context(
                go_gateway(binary, service, logs / "grpc-gateway.log")
            )
        path = f"/v1/batch_operations/{operation_id}"
        # The bare handler answers what the first REST subject answers, byte for byte.
        body, etag = get_json(next(iter(servers.values())).url + path)
        servers[BARE] = stack.enter_context(bare_handler(body, work))
        # A poller that holds the current ETag: every answer is a 304 without a body.
        polls: dict[str, tuple[HttpServer, tuple[str, ...]]] = {
            name: (server, ()) for name, server in servers.items()
        }
        if etag is not None and ALL_IN_ONE in servers:
            polls[POLL] = (servers[ALL_IN_ONE], (f"If-None-Match: {etag}",))
        measured = {name: Measured(name) for name in polls}
        for _ in range(plan.repeats):
            for name, (server, headers) in polls.items():
                measured[name].add(server, wrk_get_of(server, path, load, headers))
    if POLL in measured:
        measured[POLL].check_bodiless(len(body))

    def row(name: str, ceiling: str | None, target: Target | None = None) -> Row:
        label = name if ceiling is None else f"{name} vs {ceiling}"
        ceiling_rate = measured[ceiling].rate if ceiling else None
        return Row(label, measured[name].rate, ceiling_rate, target, measured[name].extra())

    figure.rows.append(row(BARE, None))
    for name, target in ((GO, None), (GATEWAY, None), (ALL_IN_ONE, None)):
        if name in measured:
            figure.rows.append(row(name, BARE, target))
    if GO in measured:
        for name, bound in ((GATEWAY, 0.8), (ALL_IN_ONE, 1.5)):
            if name in measured:
                figure.rows.append(row(name, GO, Target(">=", bound)))
    if POLL in measured:
        figure.rows.append(row(POLL, ALL_IN_ONE))
    figure.notes.append(
        f"wrk: 1 thread, {CONNECTIONS} connections, {plan.load_seconds:g} s after a "
        f"{max(1, round(plan.warmup_seconds))} s warm-up; "
        "gateways and service share the subject core; "
        f"{ALL_IN_ONE}: one process, its gateway calling its service in-process; "
        f"{POLL}: every request sends the current ETag and is answered 304 (checked by "
        "bytes read)"
    )
    return figure


def wrk_get_of(server: HttpServer, path: str, load: Load, headers: tuple[str, ...]) -> Throughput:
    watched = (server.pid,) if server.service_pid is None else (server.pid, server.service_pid)
    return wrk_get(server.url + path, TOKEN, load, watched, headers)


@dataclass
class Measured:
    """One subject's samples: rate, latency, and CPU per request where it goes."""

    name: str
    rate: Series = field(init=False)
    p50: Series = field(init=False)
    p99: Series = field(init=False)
    cpu: Series = field(init=False)
    service_cpu: Series = field(init=False)
    bytes_per_request: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rate = Series(self.name, "requests/s")
        self.p50 = Series(f"{self.name} p50", "ms")
        self.p99 = Series(f"{self.name} p99", "ms")
        # The HTTP server's (a gateway, the bare handler, the whole all-in-one batchd)
        # and the gRPC service's behind it, when that is another process.
        self.cpu = Series(f"{self.name} CPU", "us/request")
        self.service_cpu = Series(f"service CPU via {self.name}", "us/request")

    def add(self, server: HttpServer, result: Throughput) -> None:
        self.rate.samples.append(result.per_second)
        self.p50.samples.append(result.p50_ms or 0.0)
        self.p99.samples.append(result.p99_ms or 0.0)
        self.cpu.samples.append(result.cpu_seconds[0] * 1e6 / result.requests)
        if server.service_pid is not None:
            self.service_cpu.samples.append(result.cpu_seconds[1] * 1e6 / result.requests)
        self.bytes_per_request.append(result.bytes_read / result.requests)

    def extra(self) -> dict[str, Series]:
        extra = {"p50": self.p50, "p99": self.p99, "CPU": self.cpu}
        if self.service_cpu.samples:
            extra["service CPU"] = self.service_cpu
        return extra

    def check_bodiless(self, body_bytes: int) -> None:
        """A 304 brings headers only: a run that read bodies did not measure what it says."""
        most = max(self.bytes_per_request)
        if most >= body_bytes:
            raise LoadError(
                f"{self.name}: {most:.0f} bytes a response, a body's worth ({body_bytes}): "
                "the answers were not all 304"
            )
