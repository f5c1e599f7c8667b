"""Executemany without SQLAlchemy's per-row work, for the hottest bulk writes.

For every row of an executemany SQLAlchemy builds a parameter dictionary and
runs each column's bind processor; for a group of operation results, or the
rows of a new batch, that cost more than the database's own work. A
BulkStatement is compiled once per dialect, and its rows go to the driver as
plain tuples. Callers give values the driver takes as they are: JSON already
serialised with json_text, enums as their str values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import CursorResult
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import UpdateBase

from service.database import DbConnection


class JsonText(str):
    """A JSON document's own text, already known to parse and to be storable."""


def json_text(value: Any) -> str | None:
    """A JSON column's value as SQLAlchemy would send it: SQL NULL for None.
    JsonText goes as it is: serialising it again would cost what parsing did."""
    if value is None:
        return None
    if isinstance(value, JsonText):
        return value
    return json.dumps(value)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # The statement's own constants, under the names of their bind parameters.
    constants: dict[str, Any]
    in_order: itemgetter[Any]


class BulkStatement:
    def __init__(self, statement: UpdateBase) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}

    async def execute_many(
        self, connection: DbConnection, rows: Sequence[Mapping[str, Any]]
    ) -> CursorResult[Any]:
        compiled = self._compiled(connection.dialect)
        values = [compiled.in_order({**compiled.constants, **row}) for row in rows]
        return await connection.exec_driver_sql(compiled.sql, values)

    def _compiled(self, dialect: Dialect) -> _Compiled:
        if dialect.name not in self._by_dialect:
            compiled = self.statement.compile(dialect=dialect)
            names = compiled.positiontup or []
            # itemgetter of a single name would return a value, not a tuple.
            if len(names) < 2:
                raise ValueError("a bulk statement takes positional parameters, several")
            constants = {
                name: bind.effective_value
                for name, bind in compiled.binds.items()
                if not bind.required
            }
            self._by_dialect[dialect.name] = _Compiled(str(compiled), constants, itemgetter(*names))
        return self._by_dialect[dialect.name]
