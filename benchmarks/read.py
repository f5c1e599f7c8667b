"""Figure 1 (gRPC reads next to bare gRPC servers) and its growth with the table size."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from batchd.v1 import batch_pb2
from benchmarks.fixtures import copy_database, populated_database, some_operation_id
from benchmarks.loadgen import Load, grpc_frame, h2load_grpc
from benchmarks.processes import (
    SUBJECT_CORE,
    cpu_seconds,
    free_port,
    python_module,
    running,
    wait_port,
)
from benchmarks.results import Figure, Plan, Row, Series, Target
from benchmarks.service_process import METADATA, NO_UPSTREAM, TOKEN, batchd_service, client

METHOD = "/batchd.v1.BatchService/GetBatchOperation"
# 8 connections x 8 streams: enough calls in flight to keep one core busy.
LOAD_SHAPE = (8, 8)


def fetch_reply(address: str, operation_id: str) -> bytes:
    with client(address) as stub:
        reply = stub.GetBatchOperation(
            batch_pb2.GetBatchOperationRequest(id=operation_id), metadata=METADATA, timeout=10
        )
    return bytes(reply.SerializeToString())


def request_file(work: Path, operation_id: str) -> Path:
    path = work / f"get-{operation_id}.grpc"
    message = batch_pb2.GetBatchOperationRequest(id=operation_id).SerializeToString()
    path.write_bytes(grpc_frame(message))
    return path


def measure(plan: Plan, work: Path) -> tuple[Figure, Series | None, dict[int, Series]]:
    """Figure 1, the bare ceiling, and the service's calls/s at every stored size."""
    figure = Figure(1, "gRPC read: GetBatchOperation calls/s (h2load)")
    load = Load(*LOAD_SHAPE, plan.load_seconds, plan.warmup_seconds)
    logs = work / "logs"
    with ExitStack() as stack:
        targets: dict[str, tuple[str, Path, int, int]] = {}
        for size in plan.stored:
            database = copy_database(populated_database(size), work / f"read-{size}.db")
            operation_id = some_operation_id(database)
            service = stack.enter_context(
                batchd_service(
                    f"sqlite+aiosqlite:///{database}", NO_UPSTREAM, logs / f"read-{size}.log"
                )
            )
            reply = fetch_reply(service.address, operation_id)
            targets[f"batchd, {size:,} stored"] = (
                service.address,
                request_file(work, operation_id),
                len(reply),
                service.child.pid,
            )
            if size == plan.main_stored:
                main_reply, main_request = reply, targets[f"batchd, {size:,} stored"][1]
        reply_file = work / "get-reply.bin"
        reply_file.write_bytes(main_reply)
        for flavour in ("aio", "sync"):
            port = free_port()
            log = logs / f"bare-grpc-{flavour}.log"
            command = python_module(
                "benchmarks.bare_grpc", flavour, f"127.0.0.1:{port}", str(reply_file)
            )
            child = stack.enter_context(running(command, SUBJECT_CORE, log))
            wait_port(child, port, log)
            targets[f"bare {flavour}"] = (
                f"127.0.0.1:{port}",
                main_request,
                len(main_reply),
                child.pid,
            )
        series = {name: Series(name, "calls/s") for name in targets}
        # CPU per call of the server: on a busy machine it varies less than the rate.
        cpu = {name: Series(f"{name} CPU", "us/call") for name in targets}
        # Repeats interleave the subjects, so a slow spell of the machine hits all alike.
        for _ in range(plan.repeats):
            for name, (address, body, reply_bytes, pid) in targets.items():
                before = cpu_seconds(pid)
                result = h2load_grpc(f"http://{address}{METHOD}", body, TOKEN, load, reply_bytes)
                # h2load's count leaves out its warm-up, the CPU time does not: scaled by
                # the measured share of the run.
                measured = plan.load_seconds / (plan.load_seconds + plan.warmup_seconds)
                used = (cpu_seconds(pid) - before) * measured
                cpu[name].samples.append(used * 1e6 / result.requests)
                series[name].samples.append(result.per_second)
    # The ceiling is the bare grpc.aio server, the server class batchd runs (issue 17);
    # the sync server stays in the table for information.
    bare = series["bare aio"]
    figure.rows.append(
        Row("bare grpc.aio server", series["bare aio"], extra={"CPU": cpu["bare aio"]})
    )
    figure.rows.append(
        Row("bare sync grpc server", series["bare sync"], extra={"CPU": cpu["bare sync"]})
    )
    figure.rows.append(
        Row(
            f"batchd, {plan.main_stored:,} stored operations",
            series[f"batchd, {plan.main_stored:,} stored"],
            bare,
            Target(">=", 0.8),
            {"CPU": cpu[f"batchd, {plan.main_stored:,} stored"]},
        )
    )
    figure.notes.append(
        f"h2load: {LOAD_SHAPE[0]} connections x {LOAD_SHAPE[1]} streams, "
        f"{plan.load_seconds:g} s after {plan.warmup_seconds:g} s warm-up; ceiling: {bare.name}"
    )
    by_size = {size: series[f"batchd, {size:,} stored"] for size in plan.stored}
    return figure, bare, by_size
