"""The grpc.aio server: BatchService, health checking and reflection.

The port answers anyone, token or not, so grpc core's HTTP/2 abuse limits are set
rather than left to defaults. Rapid reset (CVE-2023-44487: HEADERS then RST_STREAM,
endlessly) is answered as grpc core offers it: each reset makes the server send a
PING, and a client that does not answer one within PING_TIMEOUT_MS is sent GOAWAY
and cut off; streams past the concurrent limit are refused. The limit leaves room
for every event stream the process allows (the gateway multiplexes them all on one
connection). Clients that ping too often are cut off after two strikes, and idle
connections are pinged so that dead peers' are closed.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from batchd import tracing
from batchd.config import ConfigError, host_port
from batchd.messages import MESSAGE_SIZE_OPTIONS
from batchd.v1 import batch_pb2_grpc
from batchd.vocabulary import SERVICE_NAME
from service.in_process import InProcessChannel, Registration
from service.rpc_scope import AddToServer, RpcScope, RpcScopeInterceptor
from service.servicer import BatchServicer

# Limits against a client that abuses HTTP/2 itself (CVE-2023-44487, rapid
# reset: streams opened and reset at once, no token needed). grpc core counts a
# stream against the limit until the server has let go of it, and refuses the
# ones beyond; every reset it receives asks for a ping, and a connection whose
# peer leaves a ping unanswered this long is closed. The stream limit leaves room
# for every event stream: the gateway carries all of its streams on one connection.
PING_TIMEOUT_MS = 10_000
GRPC_ADDRESS_SETTING = "BATCH_GRPC_ADDRESS"
# Streams besides the event streams: unary calls in flight on one connection.
UNARY_STREAMS = 256


def abuse_limits(max_watches: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_concurrent_streams", max_watches + UNARY_STREAMS),
        ("grpc.http2.ping_on_rst_stream_percent", 100),
        ("grpc.http2.ping_timeout_ms", PING_TIMEOUT_MS),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]


@dataclass(frozen=True)
class Services:
    """What the gRPC server and the in-process channel both serve, and how."""

    batches: BatchServicer
    health: HealthServicer
    # How BatchService is registered: inside the RPC scope, or as generated.
    add_batches: AddToServer
    interceptors: tuple[Any, ...]

    @classmethod
    def of(cls, servicer: BatchServicer) -> Services:
        scope = RpcScope(servicer.tenants)
        add_batches = batch_pb2_grpc.add_BatchServiceServicer_to_server
        traced = tuple(tracing.grpc_server_interceptors())
        if not traced:
            # Wrapped as registered: no interceptor on the call path at all.
            return cls(servicer, HealthServicer(), scope.registering(add_batches), ())
        # The first interceptor is the outermost: tracing's span runs inside the RPC scope.
        return cls(servicer, HealthServicer(), add_batches, (RpcScopeInterceptor(scope), *traced))

    def registrations(self) -> list[Registration]:
        return [
            (self.add_batches, self.batches),
            (health_pb2_grpc.add_HealthServicer_to_server, self.health),
        ]

    def in_process_channel(self, client_interceptors: Sequence[Any] = ()) -> InProcessChannel:
        """A channel to these services with no socket: for the all-in-one gateway, with
        the client interceptors its gRPC channel would have."""
        return InProcessChannel(self.registrations(), self.interceptors, client_interceptors)


class _GenericHandlersOnly:
    """A grpc.aio server, as a generated `add_*_to_server` registers on it, given the
    generic handlers only, not each method by name as well.

    grpc.aio's accepting loop keeps one pending request for each method registered by
    name (and one for all others), and for every call it accepts, asyncio.wait walks
    all of them, adding and removing a callback on each: with BatchService's 15
    methods and health's 2 by name, about 100,000 instructions a call. The generic
    handlers find the same handlers with one dict lookup. (Reflection registers
    itself, its one method by name.)"""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        """Left out: the generic handlers registered beside these serve the same methods."""


def build_server(services: Services, address: str, max_watches: int) -> grpc.aio.Server:
    options = [*MESSAGE_SIZE_OPTIONS, ("grpc.so_reuseport", 0), *abuse_limits(max_watches)]
    server = grpc.aio.server(interceptors=services.interceptors, options=options)
    for add_to_server, servicer in services.registrations():
        add_to_server(servicer, _GenericHandlersOnly(server))
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    reason = _bind_refused(address)
    if reason is None:
        try:
            reason = None if server.add_insecure_port(address) else "grpc could not bind it"
        except RuntimeError:  # grpcio's words for it, on several lines
            reason = "grpc could not bind it"
    if reason is not None:
        raise OSError(f"cannot listen on {GRPC_ADDRESS_SETTING}={address}: {reason}")
    return server


def _bind_refused(address: str) -> str | None:
    """Why no address `host:port` resolves to can be bound, in the system's words, or None.

    Asked before grpc core tries, which would log its own multi-line story to stderr;
    an address grpc reads and host_port does not (such as unix:) is left to grpc."""
    try:
        host, port = host_port(address, GRPC_ADDRESS_SETTING)
        resolved = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (ConfigError, OSError):
        return None
    reasons = []
    for family, kind, protocol, _, socket_address in resolved:
        with socket.socket(family, kind, protocol) as probe:
            # As grpc core binds: a port in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(socket_address)
            except OSError as error:
                reasons.append(error.strerror or str(error))
                continue
        return None
    return reasons[0] if reasons else None


async def set_serving(health_servicer: HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, status)
