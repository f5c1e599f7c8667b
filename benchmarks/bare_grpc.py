"""The gRPC ceiling: BatchService.GetBatchOperation answering one constant message.

`python -m benchmarks.bare_grpc {aio,sync} ADDRESS RESPONSE_FILE` serves the
response the real service gave for the benchmarked id (so the same size),
parsing each request and serialising the reply like any servicer would,
with no storage, authentication or conversion behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from batchd.v1 import batch_pb2, batch_pb2_grpc

SYNC_WORKERS = 8


class ConstantServicer(batch_pb2_grpc.BatchServiceServicer):
    def __init__(self, response: batch_pb2.GetBatchOperationResponse) -> None:
        self.response = response

    def GetBatchOperation(
        self, request: batch_pb2.GetBatchOperationRequest, context: Any
    ) -> batch_pb2.GetBatchOperationResponse:
        return self.response


class AsyncConstantServicer(batch_pb2_grpc.BatchServiceServicer):
    def __init__(self, response: batch_pb2.GetBatchOperationResponse) -> None:
        self.response = response

    async def GetBatchOperation(
        self, request: batch_pb2.GetBatchOperationRequest, context: Any
    ) -> batch_pb2.GetBatchOperationResponse:
        return self.response


def serve_sync(address: str, response: batch_pb2.GetBatchOperationResponse) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=SYNC_WORKERS))
    batch_pb2_grpc.add_BatchServiceServicer_to_server(ConstantServicer(response), server)
    server.add_insecure_port(address)
    server.start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    stopping.wait()
    server.stop(grace=1).wait()


async def serve_aio(address: str, response: batch_pb2.GetBatchOperationResponse) -> None:
    server = grpc.aio.server()
    batch_pb2_grpc.add_BatchServiceServicer_to_server(AsyncConstantServicer(response), server)
    server.add_insecure_port(address)
    await server.start()
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    await server.stop(grace=1)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_grpc")
    parser.add_argument("flavour", choices=("aio", "sync"))
    parser.add_argument("address")
    parser.add_argument("response_file", type=Path)
    args = parser.parse_args()
    response = batch_pb2.GetBatchOperationResponse.FromString(args.response_file.read_bytes())
    if args.flavour == "sync":
        serve_sync(args.address, response)
    else:
        asyncio.run(serve_aio(args.address, response))


if __name__ == "__main__":
    main()
