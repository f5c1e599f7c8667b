"""A database error never carries the statement's parameters: they are operations'
bodies, upstream responses and sealed credentials, and errors reach the logs."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError

from service.database import open_database
from service.migrate import upgrade

SECRET = "Bearer live-token-in-a-body-4f1a"


async def test_a_refused_statement_names_no_parameter(database_url: str) -> None:
    database = open_database(database_url)
    await upgrade(database)
    try:
        with pytest.raises(StatementError) as refused:
            async with database.write() as connection:
                # No such table: refused, with the secret among its parameters.
                await connection.execute(
                    text("INSERT INTO no_such_table (secret) VALUES (:secret)"),
                    {"secret": SECRET},
                )
        assert SECRET not in str(refused.value)
        assert SECRET not in repr(refused.value)
    finally:
        await database.dispose()
