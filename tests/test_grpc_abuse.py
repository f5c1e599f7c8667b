"""A client that abuses HTTP/2 on the gRPC port is cut off while others are served.

The attacker is a raw socket speaking HTTP/2 through the `h2` library: it opens
streams and resets them at once (HEADERS + RST_STREAM, CVE-2023-44487 "rapid
reset"), as fast as the server takes them, and never reads what comes back.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.errors
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.server import PING_TIMEOUT_MS
from tests.processes import service_env, start_service

# Long enough for the server's limits to act several times over.
FLOOD_SECONDS = 3 * PING_TIMEOUT_MS / 1000
STREAMS_PER_WRITE = 100


def rapid_reset(host: str, port: int) -> tuple[bool, int, float]:
    """Floods until the server cuts the connection or FLOOD_SECONDS pass: whether
    it was cut, how many streams were reset, and after how many seconds."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", f"{host}:{port}"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    started = time.monotonic()
    reset = 0
    with socket.create_connection((host, port)) as sock:
        sock.settimeout(1)
        pending = connection.data_to_send()
        while time.monotonic() - started < FLOOD_SECONDS:
            if not pending:
                for _ in range(STREAMS_PER_WRITE):
                    stream = connection.get_next_available_stream_id()
                    connection.send_headers(stream, headers)
                    connection.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
                reset += STREAMS_PER_WRITE
                pending = connection.data_to_send()
            try:
                sent = sock.send(pending)
            except TimeoutError:
                continue  # the server stopped reading: keep pushing until it decides
            except (BrokenPipeError, ConnectionResetError):
                return True, reset, time.monotonic() - started
            pending = pending[sent:]
    return False, reset, time.monotonic() - started


async def test_a_rapid_reset_flood_is_cut_off_while_others_are_served(tmp_path: Path) -> None:
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}", "http://127.0.0.1:9")
    service = await start_service(env, tmp_path / "service.log")
    host, port = env["BATCH_GRPC_ADDRESS"].rsplit(":", 1)
    try:
        flood = asyncio.create_task(asyncio.to_thread(rapid_reset, host, int(port)))
        served = 0
        async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while not flood.done():
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
                served += 1
                await asyncio.sleep(0.05)
        cut, reset, seconds = await flood
        assert cut, f"{reset} streams reset in {seconds:.1f} s and the connection still open"
        assert served > 0
    finally:
        await service.stop()
