"""The gateway's settings: where it listens, which gRPC backend it calls, and its limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from batchd.config import ConfigError, env, host_port


@dataclass(frozen=True)
class GatewaySettings:
    http_address: str = field(
        default="127.0.0.1:8080",
        metadata=env("BATCH_HTTP_ADDRESS", "host:port the REST gateway binds"),
    )
    grpc_target: str = field(
        default="127.0.0.1:50051",
        metadata=env("BATCH_GRPC_TARGET", "gRPC target of the BatchService the gateway calls"),
    )
    max_body_bytes: int = field(
        default=10 * 1024 * 1024,
        metadata=env("BATCH_MAX_BODY_BYTES", "largest request body the gateway accepts"),
    )
    rpc_timeout: float = field(
        default=10.0,
        metadata=env("BATCH_RPC_TIMEOUT", "seconds the gateway waits for one gRPC call"),
    )
    keepalive_timeout: float = field(
        default=75.0,
        metadata=env(
            "BATCH_HTTP_KEEPALIVE_TIMEOUT",
            "seconds a connection may take to send a request's headers, idle time included",
        ),
    )
    body_timeout: float = field(
        default=60.0,
        metadata=env(
            "BATCH_HTTP_BODY_TIMEOUT", "seconds a client may take to send a request's body"
        ),
    )
    sse_keep_alive: float = field(
        default=15.0,
        metadata=env("BATCH_SSE_KEEP_ALIVE", "seconds of silence before an event stream's ping"),
    )

    def __post_init__(self) -> None:
        host_port(self.http_address, "BATCH_HTTP_ADDRESS")
        durations = (
            self.rpc_timeout,
            self.keepalive_timeout,
            self.body_timeout,
            self.sse_keep_alive,
        )
        if self.max_body_bytes < 1 or not all(duration > 0 for duration in durations):
            raise ConfigError(
                "BATCH_MAX_BODY_BYTES, BATCH_RPC_TIMEOUT, BATCH_HTTP_KEEPALIVE_TIMEOUT, "
                "BATCH_HTTP_BODY_TIMEOUT and BATCH_SSE_KEEP_ALIVE must be positive"
            )

    @property
    def host(self) -> str:
        return host_port(self.http_address, "BATCH_HTTP_ADDRESS")[0]

    @property
    def port(self) -> int:
        return host_port(self.http_address, "BATCH_HTTP_ADDRESS")[1]


SETTINGS_KEY = web.AppKey("settings", GatewaySettings)
