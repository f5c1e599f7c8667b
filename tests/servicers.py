"""The service's own servicer over a SQLite file, for tests that serve it in the test process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from service.auth import Tenants
from service.credentials import sealer_from_settings
from service.database import Database, open_database
from service.migrate import upgrade
from service.rate_limit import CreateRateLimiter
from service.servicer import BatchServicer
from service.signals import Signals
from service.stream_slots import StreamLimits
from service.validation import BatchLimits
from tests.processes import TOKEN


async def migrated_sqlite(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}"
    migrated = open_database(url)
    await upgrade(migrated)
    await migrated.dispose()
    return url


def sqlite_database(url: str, **pool: Any) -> Database:
    """A database over `url` with these pool options (a pool of one, say)."""
    return Database(create_async_engine(url, **pool))


def servicer_of(database: Database, url: str) -> BatchServicer:
    """Tenant A's token only; no engine runs, so batches stay as created."""
    return BatchServicer(
        database,
        Tenants({TOKEN: "tenant-a"}),
        sealer_from_settings("", dev_mode=True),
        BatchLimits(10, 1 << 20, 16),
        Signals(url),
        CreateRateLimiter(0, 1),
        StreamLimits(10, 10),
    )
