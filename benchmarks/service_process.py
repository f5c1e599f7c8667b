"""The real `python -m service`, pinned to the subject core, and a gRPC client for it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

import grpc

from batchd.json_values import to_struct
from batchd.messages import MESSAGE_SIZE_OPTIONS
from batchd.v1 import batch_pb2, batch_pb2_grpc
from benchmarks.fixtures import TENANT
from benchmarks.processes import SUBJECT_CORE, free_port, python_module, running, wait_serving

# The one tenant every figure works as: the load generators send its token.
TOKEN = "token-a"
METADATA = (("authorization", f"Bearer {TOKEN}"),)
# What every figure runs the service with, whatever it measures.
SERVICE_SETTINGS = {
    "BATCH_API_TOKENS": f"{TOKEN}:{TENANT}",
    "BATCH_SECRET_KEY": "j6lw-bkWyJWePDAqMHq5tW2ZI0DuRpeX9zj0BWOodiE=",
    "BATCH_LOG_LEVEL": "WARNING",
}
# Where the read figures point the service: reads never execute anything.
NO_UPSTREAM = "http://127.0.0.1:9"
# Often enough to stop the clock within 2% of a 2.5 s batch, rarely enough to cost nothing.
POLL_SECONDS = 0.05
# A batch whose finished count has not moved for this long is stuck, not slow.
STALL_SECONDS = 30.0


@dataclass(frozen=True)
class RunningService:
    child: Popen[bytes]
    address: str


@contextmanager
def batchd_service(
    database_url: str, upstream_url: str, log_path: Path, **overrides: str
) -> Iterator[RunningService]:
    env = {
        **SERVICE_SETTINGS,
        "BATCH_DATABASE_URL": database_url,
        "BATCH_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "BATCH_UPSTREAM_URL": upstream_url,
        **overrides,
    }
    with running(python_module("service"), SUBJECT_CORE, log_path, env) as child:
        wait_serving(child, env["BATCH_GRPC_ADDRESS"], log_path)
        yield RunningService(child, env["BATCH_GRPC_ADDRESS"])


@contextmanager
def client(address: str) -> Iterator[batch_pb2_grpc.BatchServiceStub]:
    with grpc.insecure_channel(address, options=MESSAGE_SIZE_OPTIONS) as channel:
        yield batch_pb2_grpc.BatchServiceStub(channel)


def batch_request(specs: list[dict[str, Any]]) -> batch_pb2.CreateBatchRequest:
    operations = []
    for spec in specs:
        operation = batch_pb2.BatchOperation(
            http_method=f"HTTP_METHOD_{spec['http_method']}",
            path=spec["path"],
        )
        for name in ("query_params", "body"):
            if spec.get(name) is not None:
                getattr(operation, name).CopyFrom(to_struct(spec[name]))
        operations.append(operation)
    return batch_pb2.CreateBatchRequest(batch=batch_pb2.Batch(batch_operations=operations))


def wait_completed(stub: batch_pb2_grpc.BatchServiceStub, batch_id: str) -> None:
    """Polls GetBatch until the batch completes; fails if it stalls or an operation failed."""
    finished, progressed = -1, time.monotonic()
    while True:
        batch = stub.GetBatch(batch_pb2.GetBatchRequest(id=batch_id), metadata=METADATA).batch
        if batch.status == batch_pb2.BATCH_STATUS_COMPLETED:
            break
        if batch.finished_batch_operations_count != finished:
            finished, progressed = batch.finished_batch_operations_count, time.monotonic()
        elif time.monotonic() - progressed > STALL_SECONDS:
            raise TimeoutError(
                f"batch {batch_id} stalled: {finished} of {batch.batch_operations_count} "
                f"operations finished and no progress for {STALL_SECONDS:g} s"
            )
        time.sleep(POLL_SECONDS)
    unsuccessful = stub.ListBatchOperations(
        batch_pb2.ListBatchOperationsRequest(
            batch_ids=[batch_id],
            statuses=[
                batch_pb2.BATCH_OPERATION_STATUS_FAILED,
                batch_pb2.BATCH_OPERATION_STATUS_TIMED_OUT,
            ],
            page_size=1,
        ),
        metadata=METADATA,
    )
    if unsuccessful.total_size:
        raise RuntimeError(f"{unsuccessful.total_size} operations of batch {batch_id} failed")
