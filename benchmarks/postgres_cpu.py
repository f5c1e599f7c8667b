"""CPU time PostgreSQL's own processes spend for one database, read from /proc.

PostgreSQL runs a process per connection (a backend): the backends connected to
the bench's scratch database are found in `pg_stat_activity`, and their user
plus system time is read from `/proc/<pid>/stat`, as for any process. The
server's shared helpers (WAL writer, checkpointer) also serve other databases on
this machine, so they are left out: the figure is what the bench's own
connections cost the server.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

from benchmarks.processes import cpu_seconds


def backend_pids(psql: Sequence[str], database: str) -> list[int]:
    """The server processes connected to `database` now (psql's own is on another)."""
    query = f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'"
    done = subprocess.run(
        [*psql, "-At", "-c", query], check=True, capture_output=True, text=True, timeout=30
    )
    return [int(line) for line in done.stdout.split()]


def cpu_by_pid(pids: Sequence[int]) -> dict[int, float]:
    """Each process's CPU seconds so far; a process gone meanwhile is left out."""
    seconds = {}
    for pid in pids:
        try:
            seconds[pid] = cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return seconds


def spent_between(before: Mapping[int, float], after: Mapping[int, float]) -> float:
    """CPU seconds used between two readings; a backend born meanwhile counts whole.

    A backend that ended between the readings is lost: the service keeps its
    connections pooled, so this undercounts only the rare reconnection."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
