"""Fixture data: SQLite files holding N finished operations, and the rows a batch stores.

Populating is not what is measured, so it goes straight to the file with
sqlite3's executemany; the schema comes from the service's own migrations,
so the file is exactly what `python -m service` opens.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.processes import ROOT
from service.migrate import upgrade_database
from service.models import BatchStatus, OperationStatus
from service.store import batches, operations

TENANT = "tenant-a"  # the tenant of benchmarks.service_process.TOKEN
OPERATIONS_PER_BATCH = 1000
# The JSON the upstream (nginx) answers and the populated operations hold.
PRODUCT = {
    "id": "5a3e0b8c-2b57-4d6f-9d2e-2f4f1d3c7a10",
    "object": "product",
    "name": "Bench product",
    "description": "A product the benchmark upstream answers with, of a realistic size.",
    "prices": [{"amount": 1900, "currency": "usd"}, {"amount": 1700, "currency": "eur"}],
    "archived": False,
    "metadata": {"sku": "BENCH-1", "color": "blue"},
}
FIXTURES = ROOT / "var" / "bench" / "fixtures"


def schema_version() -> str:
    """Changes whenever the schema does (its tables, or what a migration writes, such as
    SQLite's planner statistics), so cached fixture files are rebuilt."""
    digest = hashlib.sha256((ROOT / "service" / "models.py").read_bytes())
    for revision in sorted((ROOT / "migrations" / "versions").glob("*.py")):
        digest.update(revision.read_bytes())
    return digest.hexdigest()[:12]


def create_schema(path: Path) -> None:
    """The schema as the service's migrations make it, so the service accepts the file."""
    asyncio.run(upgrade_database(f"sqlite+aiosqlite:///{path}"))


def batch_row(batch_id: str, count: int, now: float, finished: bool) -> dict[str, Any]:
    return {
        "id": batch_id,
        "tenant": TENANT,
        "status": BatchStatus.COMPLETED if finished else BatchStatus.PENDING,
        "operations_count": count,
        "finished_count": count if finished else 0,
        "sealed_authorization": None,
        "sequential": False,
        "stop_on_failure": False,
        "max_concurrency": 0,
        "in_flight_limit": 16,
        "canceled_at": None,
        "correlation_id": None,
        "traceparent": None,
        "retry_of": None,
        "labels": None,
        "created_at": now,
        "updated_at": now,
    }


def operation_row(
    batch_id: str, position: int, spec: dict[str, Any], now: float, finished: bool
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "batch_id": batch_id,
        "tenant": TENANT,
        "position": position,
        "http_method": spec["http_method"],
        "path": spec["path"],
        "query_params": spec.get("query_params"),
        "body": spec.get("body"),
        "status": OperationStatus.COMPLETED if finished else OperationStatus.PENDING,
        "response_status": 200 if finished else None,
        "response_body": PRODUCT if finished else None,
        "failure_reason": None,
        "attempts": 1 if finished else 0,
        "lease_owner": None,
        "lease_expires_at": None,
        "lease_generation": 1 if finished else 0,
        "sent_at": None,
        "idempotency_key": None,
        "created_at": now,
        "updated_at": now,
    }


def mixed_specs(count: int) -> list[dict[str, Any]]:
    """Operations like a client's: GETs with query parameters, POSTs with a body."""
    return [
        {"http_method": "GET", "path": f"/v1/products/{i}", "query_params": {"expand": ["prices"]}}
        if i % 2 == 0
        else {"http_method": "POST", "path": "/v1/products", "body": {"product": {"name": f"P{i}"}}}
        for i in range(count)
    ]


def get_specs(count: int) -> list[dict[str, Any]]:
    return [{"http_method": "GET", "path": f"/v1/products/{i}"} for i in range(count)]


def sql_values(table: Any, rows: Sequence[dict[str, Any]]) -> Iterator[tuple[Any, ...]]:
    """Rows as sqlite3 parameters, JSON columns serialised as SQLAlchemy would. Rows are
    keyed as the models name them (batches.metadata is `labels`)."""
    json_columns = {"query_params", "body", "response_body", "metadata"}
    for row in rows:
        yield tuple(
            json.dumps(row[c.key])
            if c.name in json_columns and row[c.key] is not None
            else row[c.key]
            for c in table.columns
        )


def insert_sql(table: Any) -> str:
    names = [c.name for c in table.columns]
    return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


def populated_database(stored_operations: int) -> Path:
    """A cached SQLite file with this many finished operations, in batches of 1,000."""
    path = FIXTURES / f"sqlite-{stored_operations}-{schema_version()}.db"
    if path.exists():
        return path
    FIXTURES.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    create_schema(partial)
    connection = sqlite3.connect(partial, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    specs = get_specs(OPERATIONS_PER_BATCH)
    now = time.time() - 86_400
    connection.execute("BEGIN")
    for first in range(0, stored_operations, OPERATIONS_PER_BATCH):
        count = min(OPERATIONS_PER_BATCH, stored_operations - first)
        batch_id = str(uuid.uuid4())
        batch = batch_row(batch_id, count, now, finished=True)
        rows = [operation_row(batch_id, i, specs[i], now, finished=True) for i in range(count)]
        connection.executemany(insert_sql(batches), sql_values(batches, [batch]))
        connection.executemany(insert_sql(operations), sql_values(operations, rows))
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    partial.rename(path)
    return path


def copy_database(source: Path, target: Path) -> Path:
    """A private copy of a fixture file, so runs that write do not change the cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, target)
    return target


def some_operation_id(path: Path) -> str:
    """An operation from the middle of the table, so the lookup walks a full-depth index."""
    connection = sqlite3.connect(path)
    try:
        count = connection.execute("SELECT count(*) FROM batch_operations").fetchone()[0]
        row = connection.execute(
            "SELECT id FROM batch_operations ORDER BY rowid LIMIT 1 OFFSET ?", (count // 2,)
        ).fetchone()
    finally:
        connection.close()
    return str(row[0])
