"""The database's own clock in SQL, so that no replica's clock decides a lease or
mints a rate limit's tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class _DatabaseNow(FunctionElement[float]):
    """The database's clock, in Unix seconds."""

    type = Float()
    inherit_cache = True


@compiles(_DatabaseNow)
def _postgresql_now(_element: _DatabaseNow, _compiler: SQLCompiler, **_kw: Any) -> str:
    # clock_timestamp(), not now(): now() is the transaction's start.
    return "CAST(extract(epoch FROM clock_timestamp()) AS DOUBLE PRECISION)"


@compiles(_DatabaseNow, "sqlite")
def _sqlite_now(_element: _DatabaseNow, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


def database_now() -> ColumnElement[float]:
    """Unix seconds when the statement runs, on the database's clock."""
    return _DatabaseNow()
