"""The grpc.aio server: BatchService, health checking and reflection."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from batchd.messages import MESSAGE_SIZE_OPTIONS
from batchd.v1 import batch_pb2_grpc
from batchd.vocabulary import SERVICE_NAME
from service.rpc_scope import RpcScopeInterceptor
from service.servicer import BatchServicer

# Limits against a client that abuses HTTP/2 itself (CVE-2023-44487, rapid
# reset: streams opened and reset at once, no token needed). grpc core counts a
# stream against the limit until the server has let go of it, and refuses the
# ones beyond; every reset it receives asks for a ping, and a connection whose
# peer leaves a ping unanswered this long is closed.
MAX_CONCURRENT_STREAMS = 100
PING_TIMEOUT_MS = 10_000
ABUSE_LIMITS = [
    ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
    ("grpc.http2.ping_on_rst_stream_percent", 100),
    ("grpc.http2.ping_timeout_ms", PING_TIMEOUT_MS),
]


def build_server(servicer: BatchServicer, address: str) -> tuple[grpc.aio.Server, HealthServicer]:
    options = [*MESSAGE_SIZE_OPTIONS, *ABUSE_LIMITS, ("grpc.so_reuseport", 0)]
    server = grpc.aio.server(interceptors=[RpcScopeInterceptor(servicer.tenants)], options=options)
    batch_pb2_grpc.add_BatchServiceServicer_to_server(servicer, server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot bind the gRPC server to {address}")
    return server, health_servicer


async def set_serving(health_servicer: HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, status)
