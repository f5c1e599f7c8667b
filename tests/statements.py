"""SQLAlchemy statements with chosen values bound, for the query-plan tests to explain."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BindParameter, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import visitors

from service import claims


def with_values(statement: Any, **values: Any) -> Any:
    """The statement with these values in its named bind parameters."""

    def bind(element: Any, **_: Any) -> Any:
        if isinstance(element, BindParameter) and element.key in values:
            return bindparam(
                element.key, values[element.key], type_=element.type, expanding=element.expanding
            )
        return None

    options: dict[str, Any] = {}
    return visitors.replacement_traverse(statement, options, bind)


def bound_sql(statement: Any, dialect: Dialect, **values: Any) -> tuple[str, Any]:
    """The statement's SQL in `dialect` and its parameters, with these values: unlike
    with_values, this reaches the parameters inside its CTEs too."""
    compiled = statement.compile(dialect=dialect)
    parameters = compiled.construct_params(values)
    if compiled.positional:
        return compiled.string, tuple(parameters[name] for name in compiled.positiontup or ())
    return compiled.string, parameters


def claim_of_batch_50(dialect: Dialect, now: float) -> tuple[str, Any]:
    """A claim of 32 operations of batch b50, 16 of them marked sent at once."""
    return bound_sql(
        claims.CLAIM_NEXT,
        dialect,
        claim_batch="b50",
        count=32,
        marked=16,
        owner="me",
        now=now,
        lease_until=now,
    )
