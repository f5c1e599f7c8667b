"""BATCH_TEST_POSTGRES_URL points the suite's PostgreSQL cases at another server."""

from __future__ import annotations

import asyncio
import os
import sys

from tests import postgres
from tests.processes import ROOT
from tests.tcp_proxy import tcp_proxy

# What a test run does with the server: its admin connection, and a service URL.
_PROBE = """
import asyncio
from tests import postgres

async def probe():
    admin = await postgres.connect()
    try:
        print(await admin.fetchval("SELECT current_database()"), postgres.url_of("x"))
    finally:
        await admin.close()

asyncio.run(probe())
"""


async def _probe(server_url: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PROBE,
        cwd=ROOT,
        env={**os.environ, postgres.SERVER_URL_VARIABLE: server_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_the_variable_names_the_server_the_run_uses(postgres_server: postgres.Server) -> None:
    # A server on another port: the machine's, behind a proxy that can be shut.
    async with tcp_proxy(postgres.HOST, postgres.PORT) as proxy:
        server_url = f"postgresql://{postgres.USER}@127.0.0.1:{proxy.port}/template1"
        code, output = await _probe(server_url)
        assert code == 0, output
        assert output.split() == [
            "template1",
            f"postgresql+asyncpg://{postgres.USER}@127.0.0.1:{proxy.port}/x",
        ]
        proxy.cut()  # the run reaches the server only through the variable's address
        code, output = await _probe(server_url)
        assert code != 0, output
