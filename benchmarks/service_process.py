"""The real `python -m service`, pinned to the subject core, and a gRPC client for it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import grpc

from batchd.v1 import batch_pb2_grpc
from benchmarks.processes import SUBJECT_CORE, python_module, running, wait_serving
from tests.processes import TOKEN, service_env

METADATA = (("authorization", f"Bearer {TOKEN}"),)
# Room for a 10,000-operation batch in one call.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RunningService:
    child: Popen[bytes]
    address: str


@contextmanager
def batchd_service(
    database_url: str, upstream_url: str, log_path: Path, **overrides: str
) -> Iterator[RunningService]:
    env = service_env(database_url, upstream_url, **overrides)
    with running(python_module("service"), SUBJECT_CORE, log_path, env) as child:
        wait_serving(child, env["BATCH_GRPC_ADDRESS"], log_path)
        yield RunningService(child, env["BATCH_GRPC_ADDRESS"])


@contextmanager
def client(address: str) -> Iterator[batch_pb2_grpc.BatchServiceStub]:
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    with grpc.insecure_channel(address, options=options) as channel:
        yield batch_pb2_grpc.BatchServiceStub(channel)
