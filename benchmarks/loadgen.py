"""h2load (gRPC over HTTP/2) and wrk (HTTP/1.1) on the load core, with their reports parsed."""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.processes import LOAD_CORE, cpu_seconds, run_pinned

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


@dataclass(frozen=True)
class Load:
    """How hard to push: connections, streams per connection (h2 only), seconds."""

    connections: int
    streams: int
    seconds: float
    warmup: float


@dataclass(frozen=True)
class Throughput:
    per_second: float
    requests: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    # CPU seconds each watched process used while the load was measured.
    cpu_seconds: tuple[float, ...] = ()
    # Bytes of responses read, headers included (wrk only).
    bytes_read: float = 0.0


class LoadError(Exception):
    """The load generator saw failures: the figure would not mean what it says."""


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: no compression flag, then a 4-byte big-endian length."""
    return struct.pack(">BI", 0, len(message)) + message


def h2load_grpc(url: str, body_file: Path, token: str, load: Load, reply_bytes: int) -> Throughput:
    """Unary gRPC calls, POSTing the same framed request; checks every reply had a body.

    h2load cannot read grpc-status trailers, but a failed call carries no
    DATA frame, so the data received proves the calls succeeded.
    """
    output = run_pinned(
        [
            "h2load",
            f"--clients={load.connections}",
            f"--max-concurrent-streams={load.streams}",
            f"--duration={round(load.seconds * 1000)}ms",
            f"--warm-up-time={round(load.warmup * 1000)}ms",
            f"--data={body_file}",
            "--header=content-type: application/grpc",
            "--header=te: trailers",
            f"--header=authorization: Bearer {token}",
            url,
        ],
        LOAD_CORE,
    )
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", output)
    counts = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", output)
    data = re.search(r"traffic: .*?\((\d+)\) data", output)
    if not (rate and counts and data):
        raise LoadError(f"unexpected h2load output:\n{output}")
    succeeded, data_bytes = int(counts[1]), int(data[1])
    if succeeded == 0 or data_bytes < succeeded * len(grpc_frame(b"x" * reply_bytes)):
        raise LoadError(
            f"h2load: {succeeded} calls brought {data_bytes} bytes, fewer than "
            f"{reply_bytes + 5} each: calls failed (see the service log)\n{output}"
        )
    return Throughput(float(rate[1]), succeeded)


def wrk_get(
    url: str,
    token: str,
    load: Load,
    watched: Sequence[int] = (),
    headers: Sequence[str] = (),
) -> Throughput:
    """GETs over kept-alive connections, with latency percentiles; any status of 400 or more
    is an error. Also the CPU time the `watched` processes used during the measured part."""
    command = [
        "wrk",
        "--threads=1",
        f"--connections={load.connections}",
        "--latency",
        f"--header=Authorization: Bearer {token}",
        *(f"--header={header}" for header in headers),
    ]
    run_pinned([*command, f"--duration={max(1, round(load.warmup))}s", url], LOAD_CORE)
    before = [cpu_seconds(pid) for pid in watched]
    output = run_pinned([*command, f"--duration={round(load.seconds)}s", url], LOAD_CORE)
    used = tuple(cpu_seconds(pid) - start for pid, start in zip(watched, before, strict=True))
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)([KMG]?B) read", output)
    if not (rate and total):
        raise LoadError(f"unexpected wrk output:\n{output}")
    if "Non-2xx or 3xx responses" in output or "Socket errors" in output:
        raise LoadError(f"wrk saw errors:\n{output}")
    return Throughput(
        float(rate[1]),
        int(total[1]),
        _percentile(output, "50%"),
        _percentile(output, "99%"),
        used,
        float(total[2]) * _BYTES[total[3]],
    )


def _percentile(output: str, label: str) -> float:
    found = re.search(rf"^\s*{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if not found:
        raise LoadError(f"wrk printed no {label} latency:\n{output}")
    return float(found[1]) * _UNITS[found[2]] * 1000
