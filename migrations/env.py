"""Alembic's entry point: runs revisions on the connection it is given, or on its own.

The service passes its own connection (see service/migrate.py), already in a
transaction and holding the migration lock. The `alembic` command opens the
database named by BATCH_DATABASE_URL, with the same engine setup the service
uses. SQLite cannot alter most things in place, so its revisions run in
Alembic's batch mode (copy, change, swap).
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from service.database import open_database
from service.settings import DEFAULT_DATABASE_URL

target_metadata = SQLModel.metadata


def database_url() -> str:
    return os.environ.get("BATCH_DATABASE_URL") or DEFAULT_DATABASE_URL


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_on_own_connection() -> None:
    database = open_database(database_url())
    try:
        async with database.write() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await database.dispose()


def run_offline() -> None:
    """`alembic upgrade head --sql`: prints the SQL instead of running it."""
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (given := context.config.attributes.get("connection")) is not None:
    run_migrations(given)
else:
    asyncio.run(run_on_own_connection())
