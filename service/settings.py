"""The service's settings: storage, gRPC, tenants, and the execution engine."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

from batchd import messages
from batchd.config import ConfigError, env, host_port
from batchd.messages import MAX_RESPONSE_BYTES_LIMIT

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/batchd.db"
_DURATION = re.compile(r"([0-9]{1,9})([smhd]?)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def database_url_setting() -> str:
    """The database URL field, shared by the service and `python -m service.migrate`."""
    return field(
        default=DEFAULT_DATABASE_URL,
        metadata=env(
            "BATCH_DATABASE_URL",
            "SQLAlchemy URL: sqlite+aiosqlite:///FILE or postgresql+asyncpg://...",
        ),
    )


@dataclass(frozen=True)
class ServiceSettings:
    database_url: str = database_url_setting()
    migrate_on_start: bool = field(
        default=False,
        metadata=env(
            "BATCH_MIGRATE_ON_START",
            "upgrade the database schema at start-up (SQLite always is); "
            "else run `python -m service.migrate` first",
        ),
    )
    grpc_address: str = field(
        default="127.0.0.1:50051",
        metadata=env("BATCH_GRPC_ADDRESS", "host:port the gRPC server binds"),
    )
    upstream_url: str = field(
        default="", metadata=env("BATCH_UPSTREAM_URL", "base URL operations are executed against")
    )
    api_tokens: str = field(
        default="", metadata=env("BATCH_API_TOKENS", "comma-separated token:tenant pairs")
    )
    secret_key: str = field(
        default="", metadata=env("BATCH_SECRET_KEY", "Fernet key encrypting stored credentials")
    )
    dev_mode: bool = field(
        default=False,
        metadata=env("BATCH_DEV_MODE", "allow running without BATCH_SECRET_KEY (an ephemeral key)"),
    )
    operation_timeout: float = field(
        default=30.0,
        metadata=env("BATCH_OPERATION_TIMEOUT", "seconds one operation may take, retries included"),
    )
    max_operations: int = field(
        default=1000, metadata=env("BATCH_MAX_OPERATIONS", "most operations in one batch")
    )
    max_in_flight: int = field(
        default=64,
        metadata=env("BATCH_MAX_IN_FLIGHT", "most operations executing at once in this process"),
    )
    max_in_flight_per_batch: int = field(
        default=16,
        metadata=env(
            "BATCH_MAX_IN_FLIGHT_PER_BATCH", "most operations of one batch executing at once"
        ),
    )
    max_retries: int = field(
        default=3,
        metadata=env(
            "BATCH_MAX_RETRIES", "retries of an idempotent operation after the first attempt"
        ),
    )
    lease_seconds: float = field(
        default=30.0, metadata=env("BATCH_LEASE_SECONDS", "how long a claim lives without renewal")
    )
    resend_interrupted: bool = field(
        default=False,
        metadata=env(
            "BATCH_RESEND_INTERRUPTED",
            "re-send an interrupted POST/PATCH (same Idempotency-Key) instead of failing it",
        ),
    )
    max_response_bytes: int = field(
        default=1 << 20,
        metadata=env(
            "BATCH_MAX_RESPONSE_BYTES",
            f"largest upstream body stored as is (at most {MAX_RESPONSE_BYTES_LIMIT})",
        ),
    )
    create_rate: float = field(
        default=50.0,
        metadata=env("BATCH_CREATE_RATE", "batches a tenant may create per second (0: no limit)"),
    )
    create_burst: int = field(
        default=100, metadata=env("BATCH_CREATE_BURST", "batches a tenant may create at once")
    )
    max_watches_per_tenant: int = field(
        default=100,
        metadata=env(
            "BATCH_MAX_WATCHES_PER_TENANT",
            "most event streams (WatchBatch) and exports one tenant holds open",
        ),
    )
    max_watches: int = field(
        default=2000,
        metadata=env("BATCH_MAX_WATCHES", "most event streams and exports this process holds open"),
    )
    upstream_rate_limit: float = field(
        default=0.0,
        metadata=env(
            "BATCH_UPSTREAM_RATE_LIMIT",
            "requests per second toward the upstream, all tenants and replicas (0: no limit)",
        ),
    )
    upstream_rate_burst: int = field(
        default=0,
        metadata=env(
            "BATCH_UPSTREAM_RATE_BURST",
            "requests the upstream limit lets through at once (0: one second's worth)",
        ),
    )
    tenant_rate_limit: float = field(
        default=0.0,
        metadata=env(
            "BATCH_TENANT_RATE_LIMIT",
            "requests per second toward the upstream per tenant, all replicas (0: no limit)",
        ),
    )
    tenant_rate_burst: int = field(
        default=0,
        metadata=env(
            "BATCH_TENANT_RATE_BURST",
            "requests the tenant limit lets through at once (0: one second's worth)",
        ),
    )
    max_upstream_pause: float = field(
        default=30.0,
        metadata=env(
            "BATCH_MAX_UPSTREAM_PAUSE",
            "longest pause of a tenant's sends that an upstream Retry-After can ask for",
        ),
    )
    metrics_address: str = field(
        default="",
        metadata=env(
            "BATCH_METRICS_ADDRESS", "host:port serving Prometheus metrics (python -m service)"
        ),
    )
    batch_retention: str = field(
        default="30d",
        metadata=env(
            "BATCH_RETENTION",
            "how long finished batches are kept (30d, 12h, 90m, 45s; 0: forever)",
        ),
    )
    webhook_retry_base: float = field(
        default=5.0,
        metadata=env(
            "BATCH_WEBHOOK_RETRY_BASE",
            "seconds before a failed webhook's first retry, doubling per retry up to an hour",
        ),
    )
    webhook_max_attempts: int = field(
        default=34,
        metadata=env(
            "BATCH_WEBHOOK_MAX_ATTEMPTS",
            "attempts of one webhook event before it is given up (34: about a day)",
        ),
    )
    webhook_timeout: float = field(
        default=10.0,
        metadata=env("BATCH_WEBHOOK_TIMEOUT", "seconds one webhook attempt may take"),
    )
    webhook_allow_private: bool = field(
        default=False,
        metadata=env(
            "BATCH_WEBHOOK_ALLOW_PRIVATE",
            "let webhooks reach loopback, private and other non-public addresses",
        ),
    )
    shutdown_grace: float = field(
        default=10.0,
        metadata=env("BATCH_SHUTDOWN_GRACE", "seconds SIGTERM waits for in-flight work"),
    )

    def __post_init__(self) -> None:
        if not self.tenants_by_token:
            raise ConfigError(
                "BATCH_API_TOKENS is empty: set comma-separated token:tenant pairs; "
                "batchd never runs open"
            )
        if self.max_operations < 1 or self.max_in_flight < 1 or self.max_in_flight_per_batch < 1:
            raise ConfigError("BATCH_MAX_OPERATIONS and the in-flight limits must be at least 1")
        if self.max_watches_per_tenant < 1 or self.max_watches < 1:
            raise ConfigError(
                "BATCH_MAX_WATCHES_PER_TENANT and BATCH_MAX_WATCHES must be at least 1"
            )
        if self.operation_timeout <= 0 or self.lease_seconds <= 0:
            raise ConfigError("BATCH_OPERATION_TIMEOUT and BATCH_LEASE_SECONDS must be positive")
        rate_settings = (
            self.upstream_rate_limit,
            self.upstream_rate_burst,
            self.tenant_rate_limit,
            self.tenant_rate_burst,
            self.max_upstream_pause,
        )
        if not all(0 <= value < math.inf for value in rate_settings):
            raise ConfigError(
                "BATCH_UPSTREAM_RATE_*, BATCH_TENANT_RATE_* and BATCH_MAX_UPSTREAM_PAUSE "
                "must be finite and not negative"
            )
        if not 1 <= self.max_response_bytes <= MAX_RESPONSE_BYTES_LIMIT:
            raise ConfigError(
                f"BATCH_MAX_RESPONSE_BYTES must be between 1 and {MAX_RESPONSE_BYTES_LIMIT}, "
                "so that an operation and its stored response fit in one gRPC reply"
            )
        if not (0 < self.webhook_retry_base < math.inf and 0 < self.webhook_timeout < math.inf):
            raise ConfigError("BATCH_WEBHOOK_RETRY_BASE and BATCH_WEBHOOK_TIMEOUT must be positive")
        if self.webhook_max_attempts < 1:
            raise ConfigError("BATCH_WEBHOOK_MAX_ATTEMPTS must be at least 1")
        self.retention_seconds()  # a malformed duration fails at start-up
        if self.metrics_address:
            self.metrics_listen()  # a bad address fails at start-up, before anything runs

    def metrics_listen(self) -> tuple[str, int]:
        """BATCH_METRICS_ADDRESS split; a bare `:port` listens on loopback."""
        address = self.metrics_address
        return host_port(
            f"127.0.0.1{address}" if address.startswith(":") else address, "BATCH_METRICS_ADDRESS"
        )

    def retention_seconds(self) -> float:
        """BATCH_RETENTION in seconds; 0 keeps finished batches forever."""
        match = _DURATION.fullmatch(self.batch_retention.strip())
        if match is None:
            raise ConfigError(
                f"BATCH_RETENTION={self.batch_retention[:20]!r} is not a duration "
                "such as 30d, 12h, 90m or 45s (0 keeps batches forever)"
            )
        number, unit = match.groups()
        return int(number) * _UNIT_SECONDS[unit or "s"]

    @property
    def max_operation_bytes(self) -> int:
        """The largest operation CreateBatch accepts (batchd/messages.py)."""
        return messages.max_operation_bytes(self.max_response_bytes)

    @property
    def tenants_by_token(self) -> dict[str, str]:
        return parse_tokens(self.api_tokens)

    def replace(self, **changes: object) -> ServiceSettings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def parse_tokens(raw: str) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in raw.split(","))):
        token, separator, tenant = pair.partition(":")
        if not separator or not token.strip() or not tenant.strip():
            raise ConfigError(
                f"BATCH_API_TOKENS entry {pair.split(':')[0][:4]}... is not token:tenant"
            )
        tokens[token.strip()] = tenant.strip()
    return tokens
