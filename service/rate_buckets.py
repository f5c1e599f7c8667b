"""Token buckets and pauses toward the upstream, in the database every replica shares.

A bucket is a row: `tokens` as of `updated_at`, refilled at the configured rate
up to the burst. Taking tokens is one UPDATE ... RETURNING: it refills, grants
what it can of the chunk asked for, and stores the rest, so replicas never race
(the row lock serialises them on PostgreSQL; SQLite has one writer). `now` is
the database's clock: a replica whose clock runs ahead cannot mint tokens.
A pause is a row per tenant, `paused_until` in the database's clock as well.
The same statements run on both databases; only the clock and the rounding
are spelled per dialect.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Integer, bindparam, case, cast, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from service.database import DbConnection
from service.database_clock import database_now
from service.models import RateBucket, UpstreamPause

buckets = RateBucket.__table__  # type: ignore[attr-defined]
pauses = UpstreamPause.__table__  # type: ignore[attr-defined]
UPSTREAM_BUCKET = "upstream"


def tenant_bucket(tenant: str) -> str:
    return f"tenant:{tenant}"


class _Whole(FunctionElement[int]):
    """The whole part of a non-negative number."""

    type = Integer()
    inherit_cache = True


@compiles(_Whole)
def _postgresql_whole(element: _Whole, compiler: SQLCompiler, **kw: Any) -> str:
    # PostgreSQL's CAST rounds to nearest; floor first.
    return f"CAST(floor({compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(_Whole, "sqlite")
def _sqlite_whole(element: _Whole, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's CAST truncates; its floor() needs the optional math functions.
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"


def _least(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((a < b, a), else_=b)


def _greatest(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((a > b, a), else_=b)


@dataclass(frozen=True)
class Grant:
    granted: int
    # Tokens left in the bucket after the take: below 1 when it ran short.
    left: float


def _take_statement() -> Any:
    rate = bindparam("rate", type_=Float)
    burst = bindparam("burst", type_=Float)
    wanted = bindparam("wanted", type_=Integer)
    # A clock that stepped back refills nothing, and takes nothing either.
    elapsed = _greatest(database_now() - buckets.c.updated_at, cast(0.0, Float))
    available = _least(burst, buckets.c.tokens + rate * elapsed)
    granted = _least(wanted, _Whole(available))
    return (
        update(buckets)
        .where(buckets.c.name == bindparam("bucket"))
        .values(tokens=available - granted, updated_at=database_now(), last_granted=granted)
        .returning(buckets.c.last_granted, buckets.c.tokens)
    )


# Built once: tokens are taken many times a second.
_TAKE = _take_statement()
_GIVE_BACK = (
    update(buckets)
    .where(buckets.c.name == bindparam("bucket"))
    .values(
        tokens=_least(
            bindparam("burst", type_=Float), buckets.c.tokens + bindparam("count", type_=Float)
        )
    )
)


def _insert_ignoring(connection: DbConnection, table: Any) -> Any:
    module = postgresql if connection.dialect.name == "postgresql" else sqlite
    return module.insert(table)


async def ensure_bucket(connection: DbConnection, bucket: str, burst: float) -> None:
    """Creates the bucket full, unless a replica already has."""
    statement = (
        _insert_ignoring(connection, buckets)
        .values(name=bucket, tokens=burst, updated_at=database_now(), last_granted=0)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    await connection.execute(statement)


async def take(
    connection: DbConnection, bucket: str, wanted: int, rate: float, burst: float
) -> Grant | None:
    """Takes up to `wanted` tokens; how many it got, and what is left. None when
    the bucket does not exist yet."""
    row = (
        await connection.execute(
            _TAKE, {"bucket": bucket, "wanted": wanted, "rate": rate, "burst": burst}
        )
    ).first()
    return None if row is None else Grant(int(row.last_granted), float(row.tokens))


async def give_back(connection: DbConnection, bucket: str, count: int, burst: float) -> None:
    """Returns tokens taken in the same transaction and never used."""
    await connection.execute(_GIVE_BACK, {"bucket": bucket, "count": count, "burst": burst})


async def pause_tenant(connection: DbConnection, tenant: str, seconds: float) -> None:
    """Pauses the tenant's sends for `seconds` from now (database time), unless
    a replica already paused it for longer."""
    until = database_now() + bindparam("seconds", type_=Float)
    insert = _insert_ignoring(connection, pauses).values(tenant=tenant, paused_until=until)
    statement = insert.on_conflict_do_update(
        index_elements=["tenant"],
        set_={"paused_until": _greatest(pauses.c.paused_until, insert.excluded.paused_until)},
    )
    await connection.execute(statement, {"seconds": seconds})


_PAUSED = select(pauses.c.tenant, (pauses.c.paused_until - database_now()).label("left")).where(
    pauses.c.paused_until > database_now()
)


async def paused_tenants(connection: DbConnection) -> dict[str, float]:
    """Tenants paused right now, and the seconds each pause has left."""
    rows = await connection.execute(_PAUSED)
    return {row.tenant: float(row.left) for row in rows}


_PAUSED_UNTIL = select(pauses.c.tenant, pauses.c.paused_until).where(
    pauses.c.tenant.in_(bindparam("tenants", expanding=True)),
    pauses.c.paused_until > database_now(),
)


async def pauses_of(connection: DbConnection, tenants: Collection[str]) -> dict[str, float]:
    """Which of these tenants are paused right now, and until when (Unix seconds,
    the database's clock)."""
    if not tenants:
        return {}
    rows = await connection.execute(_PAUSED_UNTIL, {"tenants": list(tenants)})
    return {row.tenant: float(row.paused_until) for row in rows}
