"""The service process: database, gRPC server and execution engine, started and stopped together."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1._async import HealthServicer

from service.auth import Tenants
from service.credentials import sealer_from_settings
from service.database import Database, open_database
from service.engine.engine import Engine
from service.engine.urls import Upstream
from service.migrate import prepare_schema
from service.notifications import Notifier
from service.rate_limit import CreateRateLimiter
from service.server import build_server, set_serving
from service.servicer import BatchServicer
from service.settings import ServiceSettings
from service.validation import BatchLimits
from service.watch import Changes

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: ServiceSettings
    database: Database
    engine: Engine
    server: grpc.aio.Server
    health: HealthServicer
    notifier: Notifier

    @classmethod
    async def start(cls, settings: ServiceSettings, upstream: Upstream) -> Service:
        sealer = sealer_from_settings(settings.secret_key, settings.dev_mode)
        database = open_database(settings.database_url)
        await prepare_schema(database, settings.migrate_on_start)
        changes = Changes()
        notifier = Notifier(settings.database_url)
        engine = Engine(database, settings, sealer, upstream, changes, notifier)
        servicer = BatchServicer(
            database,
            Tenants(settings.tenants_by_token),
            sealer,
            BatchLimits(settings.max_operations, settings.max_operation_bytes),
            changes,
            CreateRateLimiter(settings.create_rate, settings.create_burst),
            on_batch_created=engine.batch_created,
            on_batch_canceled=engine.batch_canceled,
        )
        server, health_servicer = build_server(servicer, settings.grpc_address)
        await engine.start()
        await notifier.start(on_work=engine.wake, on_changes=changes.notify)
        await server.start()
        await set_serving(health_servicer, True)
        log.info("gRPC server listening on %s", settings.grpc_address)
        return cls(settings, database, engine, server, health_servicer, notifier)

    async def stop(self) -> None:
        """Drains: refuses new calls, lets in-flight work finish within the grace period."""
        await set_serving(self.health, False)
        await self.server.stop(grace=min(5.0, self.settings.shutdown_grace))
        await self.engine.stop(grace=self.settings.shutdown_grace)
        await self.notifier.stop()
        await self.database.dispose()
