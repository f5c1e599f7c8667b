"""Schema migrations: the Alembic revisions in migrations/, applied to the service's database.

`python -m service.migrate` (or `make migrate`) upgrades the database named by
BATCH_DATABASE_URL to the latest revision. The service upgrades at start-up
when BATCH_MIGRATE_ON_START=1, and always on SQLite, whose file belongs to one
host. On PostgreSQL it otherwise only checks that the schema is the latest and
refuses to start if not: a deploy migrates once, then replicas start.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from batchd import config, logs
from batchd.config import ConfigError
from service.database import Database, open_database
from service.settings import database_url_setting

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
# Replicas that upgrade at the same time take turns on this PostgreSQL lock.
MIGRATION_LOCK_KEY = 0x62617463686D6967  # "batchmig"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration; with a connection, revisions run on it (see migrations/env.py)."""
    alembic = Config(str(ALEMBIC_INI))
    if connection is not None:
        alembic.attributes["connection"] = connection
    return alembic


async def upgrade(database: Database, revision: str = "head") -> None:
    """Upgrades in one transaction: on PostgreSQL a failed revision leaves nothing behind."""
    async with _reporting_database_errors(), database.write() as connection:
        if not database.is_sqlite:
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        await connection.run_sync(_upgrade, revision)


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


async def require_latest(database: Database) -> None:
    async with _reporting_database_errors(), database.read() as connection:
        current = await connection.run_sync(_current_heads)
    latest = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    if current != latest:
        raise ConfigError(
            f"the database schema is at revision {_shown(current)}, this batchd needs "
            f"{_shown(latest)}: run `python -m service.migrate` (make migrate) first, "
            "or start with BATCH_MIGRATE_ON_START=1"
        )


def _current_heads(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


def _shown(revisions: set[str]) -> str:
    return ", ".join(sorted(revisions)) or "none (empty database)"


async def prepare_schema(database: Database, migrate: bool) -> None:
    """What the service does at start-up: upgrade if asked (or SQLite), else check."""
    if migrate or database.is_sqlite:
        await upgrade(database)
    else:
        await require_latest(database)


@asynccontextmanager
async def _reporting_database_errors() -> AsyncIterator[None]:
    """An unreachable database or a failed revision is one line for the operator."""
    try:
        yield
    except (DBAPIError, OSError) as error:
        cause = getattr(error, "orig", None) or error
        raise ConfigError(f"database: {type(cause).__name__}: {cause}") from None


@dataclass(frozen=True)
class MigrateSettings:
    database_url: str = database_url_setting()


async def upgrade_database(url: str) -> None:
    database = open_database(url)
    try:
        await upgrade(database)
    finally:
        await database.dispose()


def main(argv: Sequence[str] | None = None) -> None:
    args = config.parse([MigrateSettings], argv, prog="python -m service.migrate")
    logs.configure_logging()
    try:
        settings = config.load(MigrateSettings, args)
        asyncio.run(upgrade_database(settings.database_url))
    except ConfigError as error:
        print(f"batchd: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
