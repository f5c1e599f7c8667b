"""The create ceiling: one batch's rows inserted with a bare sqlite3 executemany.

`python -m benchmarks.bare_insert DATABASE COUNT REPEATS` inserts REPEATS
batches of COUNT operations (the rows CreateBatch stores, JSON columns
serialised in the timed part) into a SQLite file set up like the service's
(WAL, synchronous=NORMAL, BEGIN IMMEDIATE), and prints each insert's seconds.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
import uuid
from pathlib import Path

from benchmarks.fixtures import batch_row, insert_sql, mixed_specs, operation_row, sql_values
from service.store import batches, operations


def insert_once(connection: sqlite3.Connection, count: int) -> float:
    batch_id = str(uuid.uuid4())
    now = time.time()
    specs = mixed_specs(count)
    batch = batch_row(batch_id, count, now, finished=False)
    rows = [operation_row(batch_id, i, spec, now, finished=False) for i, spec in enumerate(specs)]
    started = time.perf_counter()
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(insert_sql(batches), sql_values(batches, [batch]))
    connection.executemany(insert_sql(operations), sql_values(operations, rows))
    connection.execute("COMMIT")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_insert")
    parser.add_argument("database", type=Path)
    parser.add_argument("count", type=int)
    parser.add_argument("repeats", type=int)
    args = parser.parse_args()
    connection = sqlite3.connect(args.database, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    print(json.dumps([insert_once(connection, args.count) for _ in range(args.repeats)]))
    connection.close()


if __name__ == "__main__":
    main()
