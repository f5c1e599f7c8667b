"""The service process: database, gRPC server and execution engine, started and stopped together."""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1._async import HealthServicer

from service.auth import Tenants
from service.credentials import sealer_from_settings
from service.database import Database, open_database
from service.engine.engine import Engine
from service.engine.urls import Upstream
from service.migrate import prepare_schema
from service.rate_limit import CreateRateLimiter
from service.server import build_server, set_serving
from service.servicer import BatchServicer
from service.settings import ServiceSettings
from service.signals import Signals
from service.validation import BatchLimits

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: ServiceSettings
    database: Database
    engine: Engine
    server: grpc.aio.Server
    health: HealthServicer

    @classmethod
    async def start(cls, settings: ServiceSettings, upstream: Upstream) -> Service:
        sealer = sealer_from_settings(settings.secret_key, settings.dev_mode)
        database = open_database(settings.database_url)
        await prepare_schema(database, settings.migrate_on_start)
        signals = Signals(settings.database_url)
        engine = Engine(database, settings, sealer, upstream, signals)
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
        )
        server, health_servicer = build_server(servicer, settings.grpc_address)
        # A dead engine drains and stops the process the way SIGTERM does; stop()
        # then makes its exit status say so.
        await engine.start(on_death=lambda: signal.raise_signal(signal.SIGTERM))
        await server.start()
        await set_serving(health_servicer, True)
        log.info("gRPC server listening on %s", settings.grpc_address)
        return cls(settings, database, engine, server, health_servicer)

    async def stop(self) -> None:
        """Drains: refuses new calls, lets in-flight work finish within the grace period."""
        await set_serving(self.health, False)
        await self.server.stop(grace=min(5.0, self.settings.shutdown_grace))
        await self.engine.stop(grace=self.settings.shutdown_grace)
        await self.database.dispose()
        if self.engine.died.done():
            raise SystemExit(
                f"batchd: stopped because the engine died: {self.engine.died.result()!r}"
            )
