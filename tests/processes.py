"""Starting the real service and gateway as processes on free loopback ports."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from batchd.messages import MESSAGE_SIZE_OPTIONS
from batchd.v1 import batch_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "token-a"
OTHER_TOKEN = "token-b"
API_TOKENS = f"{TOKEN}:tenant-a,{OTHER_TOKEN}:tenant-b"
SECRET_KEY = "3Xy2tPX5iWn0oZ9Vq0K8m3s2Zr0rQk5z8aVd1lKcY0o="
BATCHD = Path(sys.executable).parent / "batchd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    """A child process of ours, started with `python -m <module>`."""

    module: str
    env: dict[str, str]
    log_path: Path
    # A console script to run instead of `python -m <module>`.
    command: tuple[str, ...] = ()
    process: asyncio.subprocess.Process | None = field(default=None, init=False)

    async def start(self) -> None:
        self.log_file = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            *(self.command or (sys.executable, "-m", self.module)),
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=self.log_file,
            stderr=self.log_file,
        )

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        code = await asyncio.wait_for(self.process.wait(), timeout)
        self.log_file.close()
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def service_env(database_url: str, upstream_url: str, **overrides: str) -> dict[str, str]:
    return {
        "BATCH_DATABASE_URL": database_url,
        "BATCH_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "BATCH_UPSTREAM_URL": upstream_url,
        "BATCH_API_TOKENS": API_TOKENS,
        "BATCH_SECRET_KEY": SECRET_KEY,
        "BATCH_LOG_LEVEL": "WARNING",
        **overrides,
    }


async def wait_serving(target: str, process: Process, timeout: float = 20) -> None:
    """Waits until the gRPC health check answers SERVING."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while loop.time() < deadline:
            assert process.process is not None
            if process.process.returncode is not None:
                raise RuntimeError(f"{process.module} exited:\n{process.log()}")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{process.module} did not become ready:\n{process.log()}")


async def start_service(env: Mapping[str, str], log_path: Path) -> Process:
    process = Process("service", dict(env), log_path)
    await process.start()
    await wait_serving(env["BATCH_GRPC_ADDRESS"], process)
    return process


@asynccontextmanager
async def serving(
    env: Mapping[str, str], log_path: Path
) -> AsyncIterator[tuple[Process, batch_pb2_grpc.BatchServiceStub]]:
    """A started service and a client of it; the service is stopped on the way out."""
    process = await start_service(env, log_path)
    try:
        async with grpc.aio.insecure_channel(
            env["BATCH_GRPC_ADDRESS"], options=MESSAGE_SIZE_OPTIONS
        ) as channel:
            yield process, batch_pb2_grpc.BatchServiceStub(channel)
    finally:
        await process.stop()


@asynccontextmanager
async def replicas_serving(
    envs: Sequence[Mapping[str, str]], log_dir: Path
) -> AsyncIterator[tuple[list[Process], list[batch_pb2_grpc.BatchServiceStub]]]:
    """A replica for each env (logs replica-N.log), and a client of each; on the way
    out the clients close and every replica still running is stopped."""
    replicas: list[Process] = []
    channels = [grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) for env in envs]
    try:
        for n, env in enumerate(envs):
            replicas.append(await start_service(env, log_dir / f"replica-{n}.log"))
        yield replicas, [batch_pb2_grpc.BatchServiceStub(channel) for channel in channels]
    finally:
        for channel in channels:
            await channel.close(None)
        for replica in replicas:
            if replica.process is not None and replica.process.returncode is None:
                await replica.stop()


def gateway_env(grpc_target: str, **overrides: str) -> dict[str, str]:
    return {
        "BATCH_HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
        "BATCH_GRPC_TARGET": grpc_target,
        "BATCH_LOG_LEVEL": "WARNING",
        **overrides,
    }


async def wait_healthy(base_url: str, process: Process, timeout: float = 20) -> None:
    """Waits until the REST gateway's /healthz answers 200."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            assert process.process is not None
            if process.process.returncode is not None:
                raise RuntimeError(f"{process.module} exited:\n{process.log()}")
            try:
                async with session.get(f"{base_url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{process.module} did not become healthy:\n{process.log()}")


async def start_gateway(env: Mapping[str, str], log_path: Path) -> tuple[Process, str]:
    """The gateway process and its base URL, once it reaches a serving backend."""
    process = Process("gateway", dict(env), log_path)
    await process.start()
    base_url = f"http://{env['BATCH_HTTP_ADDRESS']}"
    await wait_healthy(base_url, process)
    return process, base_url


def batchd_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    return {
        "BATCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}",
        "BATCH_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "BATCH_HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
        "BATCH_API_TOKENS": API_TOKENS,
        "BATCH_SECRET_KEY": SECRET_KEY,
        "BATCH_LOG_LEVEL": "WARNING",
        "BATCH_UPSTREAM_URL": "",
        "BATCH_GRPC_TARGET": "",
        "BATCH_DEV_MODE": "",
        **overrides,
    }


async def start_batchd(env: dict[str, str], tmp_path: Path) -> tuple[Process, str]:
    process = Process("batchd", env, tmp_path / "batchd.log", command=(str(BATCHD),))
    await process.start()
    base_url = f"http://{env['BATCH_HTTP_ADDRESS']}"
    await wait_healthy(base_url, process)
    return process, base_url
