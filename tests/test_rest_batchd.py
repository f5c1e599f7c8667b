"""The all-in-one `batchd` console script: service and gateway in one process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.processes import (
    BATCHD,
    Process,
    batchd_env,
    free_port,
    start_batchd,
    wait_serving,
)
from tests.rest import AUTH, call, create_batch, wait_completed
from tests.upstream import UpstreamLog


async def test_batchd_serves_rest_and_grpc_and_stops_cleanly(
    tmp_path: Path, upstream_server: tuple[str, UpstreamLog]
) -> None:
    env = batchd_env(tmp_path, BATCH_UPSTREAM_URL=upstream_server[0])
    process, base_url = await start_batchd(env, tmp_path)
    try:
        await wait_serving(env["BATCH_GRPC_ADDRESS"], process)
        async with aiohttp.ClientSession(base_url=base_url, headers=AUTH) as http:
            created = await create_batch(
                http, [{"http_method": "PUT", "path": "/echo/items/1", "body": {"n": 1}}]
            )
            batch = await wait_completed(http, created["id"])
        [operation] = batch["batch_operations"]["data"]
        assert operation["status"] == "completed"
        assert operation["response_status"] == 200
        assert operation["response_body"]["body"] == {"n": 1}
        [seen] = upstream_server[1].requests
        assert (seen.method, seen.path) == ("PUT", "/echo/items/1")
    finally:
        code = await process.stop()
    assert code == 0, process.log()


async def test_dev_mode_without_an_upstream_echoes_through_the_demo(tmp_path: Path) -> None:
    demo_address = f"127.0.0.1:{free_port()}"
    env = batchd_env(tmp_path, BATCH_DEV_MODE="1", BATCH_DEMO_UPSTREAM_ADDRESS=demo_address)
    process, base_url = await start_batchd(env, tmp_path)
    try:
        async with aiohttp.ClientSession(base_url=base_url, headers=AUTH) as http:
            created = await create_batch(
                http,
                [{"http_method": "GET", "path": "/v1/products", "query_params": {"limit": 5}}],
            )
            batch = await wait_completed(http, created["id"])
            [operation] = batch["batch_operations"]["data"]
            assert operation["response_status"] == 200
            assert operation["response_body"] == {
                "echo": True,
                "method": "GET",
                "path": "/v1/products",
                "query": "limit=5",
                "body": None,
            }
            assert await call(http, "GET", "/healthz", 200) == {"status": "ok"}
    finally:
        code = await process.stop()
    assert code == 0, process.log()


async def test_no_upstream_outside_dev_mode_is_a_one_line_error(tmp_path: Path) -> None:
    process = Process(
        "batchd", batchd_env(tmp_path), tmp_path / "batchd.log", command=(str(BATCHD),)
    )
    await process.start()
    assert process.process is not None
    assert await asyncio.wait_for(process.process.wait(), 60) == 2
    await process.stop()
    assert process.log().strip().splitlines() == [
        "batchd: BATCH_UPSTREAM_URL is not set: it is where operations are sent"
    ]
