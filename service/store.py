"""Reads and writes of batches and operations for the API, always scoped to a tenant."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import (
    Column,
    ColumnElement,
    Row,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB

from service.bulk import BulkStatement, json_text
from service.database import DbConnection
from service.models import TERMINAL_STATUSES, Batch, BatchOperation

batches = Batch.__table__  # type: ignore[attr-defined]
operations = BatchOperation.__table__  # type: ignore[attr-defined]

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def columns_of(table: Table, row_type: type[DataclassInstance]) -> list[Column[Any]]:
    """The table's columns a row dataclass names, in its fields' order, so that the
    dataclass alone states the row's shape: select them, read back with
    `row_type(**row_mapping)`, or `row_type(*row)` where the mapping costs too much."""
    return [table.c[field.name] for field in dataclasses.fields(row_type)]


@dataclass(frozen=True)
class Ordering:
    # position: batch by batch (in id order, which is creation order), each in
    # submitted order.
    column: Literal["created_at", "updated_at", "position"] = "created_at"
    descending: bool = True


@dataclass(frozen=True)
class PageRequest:
    limit: int
    page: int
    ordering: Ordering

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


_INSERT_BATCH = insert(batches)
_insert_operations = BulkStatement(insert(operations))


async def insert_batch(
    connection: DbConnection, batch: dict[str, Any], batch_operations: list[dict[str, Any]]
) -> None:
    """Stores a batch and all its operations: one insert, then one bulk insert."""
    await connection.execute(_INSERT_BATCH, [batch])
    await _insert_operations.execute_many(
        connection,
        [
            {
                **operation,
                "query_params": json_text(operation["query_params"]),
                "body": json_text(operation["body"]),
            }
            for operation in batch_operations
        ],
    )


async def get_batch(connection: DbConnection, tenant: str, batch_id: str) -> Row[Any] | None:
    parameters = {"id": batch_id, "tenant": tenant}
    row: Row[Any] | None = (await connection.execute(BATCH_BY_ID, parameters)).first()
    return row


# What convert.fill_operation shows of an operation: its claim's columns are
# no part of any message, and a read of one row costs less without them.
OPERATION_MESSAGE_COLUMNS = [
    operations.c[name]
    for name in (
        "id",
        "batch_id",
        "http_method",
        "path",
        "status",
        "attempts",
        "position",
        "created_at",
        "updated_at",
        "query_params",
        "body",
        "response_status",
        "response_body",
        "failure_reason",
    )
]
# Prepared once: building a statement costs more than running a lookup.
OPERATION_BY_ID = select(*OPERATION_MESSAGE_COLUMNS).where(
    operations.c.id == bindparam("id"), operations.c.tenant == bindparam("tenant")
)
BATCH_BY_ID = select(batches).where(
    batches.c.id == bindparam("id"), batches.c.tenant == bindparam("tenant")
)


async def operations_page(
    connection: DbConnection, tenant: str, batch_id: str, after_position: int, limit: int
) -> Sequence[Row[Any]]:
    """The batch's next `limit` operations after `after_position`, in submitted order."""
    query = (
        select(operations)
        .where(
            operations.c.tenant == tenant,
            operations.c.batch_id == batch_id,
            operations.c.position > after_position,
        )
        .order_by(operations.c.position)
        .limit(limit)
    )
    return (await connection.execute(query)).all()


async def finished_operations_of(
    connection: DbConnection, since_by_batch: Mapping[str, float]
) -> Sequence[Row[Any]]:
    """The operations of these batches that reached a terminal state at or after each
    batch's time, in one statement (the watch feed reads every watched batch so)."""
    query = (
        select(operations)
        .where(
            operations.c.status.in_(TERMINAL_STATUSES),
            or_(
                *(
                    and_(operations.c.batch_id == batch_id, operations.c.updated_at >= since)
                    for batch_id, since in since_by_batch.items()
                )
            ),
        )
        .order_by(operations.c.updated_at, operations.c.position)
    )
    return (await connection.execute(query)).all()


async def finished_operation(
    connection: DbConnection, tenant: str, batch_id: str, operation_id: str
) -> Row[Any] | None:
    """The batch's operation, if it is this tenant's and has finished."""
    query = select(operations).where(
        operations.c.id == operation_id,
        operations.c.tenant == tenant,
        operations.c.batch_id == batch_id,
        operations.c.status.in_(TERMINAL_STATUSES),
    )
    row: Row[Any] | None = (await connection.execute(query)).first()
    return row


async def finished_at_or_before(
    connection: DbConnection, batch_id: str, updated_at: float, position: int
) -> Sequence[str]:
    """Ids of the batch's operations that finished at `updated_at` and come no later
    than `position`: what the watch feed's order (time, then position) puts up to it."""
    query = select(operations.c.id).where(
        operations.c.batch_id == batch_id,
        operations.c.status.in_(TERMINAL_STATUSES),
        operations.c.updated_at == updated_at,
        operations.c.position <= position,
    )
    return (await connection.execute(query)).scalars().all()


@dataclass(frozen=True)
class Listing:
    """A table's list endpoint: a tenant's rows, those with one of `ids` in `id_column`
    and one of `statuses` when given, a page at a time, with how many there are."""

    table: Any
    id_column: str

    async def page(
        self,
        connection: DbConnection,
        tenant: str,
        ids: Sequence[str],
        statuses: Sequence[str],
        page: PageRequest,
        columns: Sequence[Any] = (),
        where: Sequence[ColumnElement[bool]] = (),
    ) -> tuple[Sequence[Row[Any]], int]:
        """The page's rows, or only these `columns` of them; `where`: more filters."""
        table = self.table
        filters = [table.c.tenant == tenant, *where]
        if ids:
            filters.append(table.c[self.id_column].in_(ids))
        if statuses:
            filters.append(table.c.status.in_(statuses))
        count_query = select(func.count()).select_from(table).where(*filters)
        total = (await connection.execute(count_query)).scalar_one()
        if total <= page.offset:
            return [], total
        # A unique key last, so that pages never overlap or skip rows: the id, or
        # for positions (unique within a batch) the batch first.
        if page.ordering.column == "position":
            keys = [table.c.batch_id, table.c.position]
        else:
            keys = [table.c[page.ordering.column], table.c.id]
        order = [key.desc() for key in keys] if page.ordering.descending else keys
        rows = await connection.execute(
            select(*(columns or [table]))
            .where(*filters)
            .order_by(*order)
            .limit(page.limit)
            .offset(page.offset)
        )
        return rows.all(), total


async def operations_by_id(connection: DbConnection, ids: Sequence[str]) -> dict[str, Row[Any]]:
    rows = await connection.execute(select(operations).where(operations.c.id.in_(ids)))
    return {row.id: row for row in rows}


_batch_listing = Listing(batches, "id")


async def list_batches(
    connection: DbConnection,
    tenant: str,
    ids: Sequence[str],
    statuses: Sequence[str],
    page: PageRequest,
    metadata: Mapping[str, str] | None = None,
    columns: Sequence[Any] = (),
) -> tuple[Sequence[Row[Any]], int]:
    """A page of the tenant's batches (or only these `columns` of them); `metadata`:
    only those holding each of these keys with exactly this value."""
    where = metadata_matches(connection.dialect.name, metadata) if metadata else []
    return await _batch_listing.page(
        connection, tenant, ids, statuses, page, columns=columns, where=where
    )


def metadata_matches(dialect: str, wanted: Mapping[str, str]) -> list[ColumnElement[bool]]:
    """Batches whose metadata holds all of `wanted`: JSONB containment on PostgreSQL;
    on SQLite one json_each lookup per key, which compares keys as stored, whatever
    characters they hold (a JSON path would have to quote them)."""
    if dialect == "postgresql":
        return [type_coerce(batches.c.labels, JSONB).contains(dict(wanted))]
    return [
        exists(
            select(literal(1))
            .select_from(labels)
            .where(labels.c.key == key, labels.c.value == value)
        )
        for key, value in wanted.items()
        for labels in [func.json_each(batches.c.labels).table_valued("key", "value")]
    ]


list_operations = Listing(operations, "batch_id").page
