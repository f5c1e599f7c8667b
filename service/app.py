"""The service process: database, gRPC server and execution engine, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from sqlalchemy.exc import DBAPIError

from batchd.config import ConfigError
from service.auth import Tenants
from service.credentials import sealer_from_settings
from service.database import Database, open_database
from service.engine.engine import Engine
from service.engine.urls import Upstream
from service.health import HealthMonitor
from service.migrate import prepare_schema
from service.rate_limit import CreateRateLimiter
from service.server import Services, build_server, set_serving
from service.servicer import BatchServicer
from service.settings import ServiceSettings
from service.signals import Signals
from service.stream_slots import StreamLimits
from service.validation import BatchLimits

log = logging.getLogger(__name__)


async def _require_writable(database: Database) -> None:
    """A database the service cannot write to stops the start, in one line."""
    try:
        await database.probe_write()
    except (DBAPIError, OSError) as error:
        cause = getattr(error, "orig", None) or error
        raise ConfigError(f"database: cannot write: {type(cause).__name__}: {cause}") from None


@dataclass
class Service:
    settings: ServiceSettings
    database: Database
    engine: Engine
    server: grpc.aio.Server
    services: Services
    health_monitor: HealthMonitor

    @classmethod
    async def start(cls, settings: ServiceSettings, upstream: Upstream) -> Service:
        sealer = sealer_from_settings(settings.secret_key, settings.dev_mode)
        database = open_database(settings.database_url)
        await prepare_schema(database, settings.migrate_on_start)
        await _require_writable(database)
        signals = Signals(settings.database_url)
        servicer = BatchServicer(
            database,
            Tenants(settings.tenants_by_token),
            sealer,
            BatchLimits(
                settings.max_operations,
                settings.max_operation_bytes,
                settings.max_in_flight_per_batch,
            ),
            signals,
            CreateRateLimiter(settings.create_rate, settings.create_burst),
            StreamLimits(settings.max_watches_per_tenant, settings.max_watches),
        )
        services = Services.of(servicer)
        server = build_server(services, settings.grpc_address, settings.max_watches)
        health = HealthMonitor(database, services.health)
        engine = Engine(
            database.for_engine(),
            settings,
            sealer,
            upstream,
            signals,
            extra_side_tasks={"health": health.run},
        )
        # A dead engine drains and stops the process the way SIGTERM does; stop()
        # then makes its exit status say so.
        await engine.start(on_death=lambda: signal.raise_signal(signal.SIGTERM))
        await server.start()
        await set_serving(services.health, True)
        log.info("gRPC server listening on %s", settings.grpc_address)
        return cls(settings, database, engine, server, services, health)

    async def stop(self) -> None:
        """Drains: claims and sends nothing new, refuses new calls, and lets calls and
        in-flight work finish together within the one grace period."""
        self.engine.stop_claiming()
        self.health_monitor.stop()
        await set_serving(self.services.health, False)
        grace = self.settings.shutdown_grace
        await asyncio.gather(self.server.stop(grace=min(5.0, grace)), self.engine.stop(grace=grace))
        await self.database.dispose()
        if self.engine.died.done():
            raise SystemExit(
                f"batchd: stopped because the engine died: {self.engine.died.result()!r}"
            )
