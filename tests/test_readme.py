"""The README's commands run as printed after `make install` / `make run`.

Every command of every `sh` block must name a program that exists from the
repository's folder (`.venv/bin/...`, or a bare name once the block activated the
virtualenv), a module that imports, or a Makefile target. The quickstart and the
scale-out recipe are then run for real, on free ports instead of the printed ones.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests import postgres
from tests.processes import ROOT, batchd_env, free_port, start_batchd
from tests.upstream import UpstreamLog

READMES = [ROOT / "README.md", ROOT / "batchctl" / "README.md"]
# Programs a reader has besides the repository's: the quickstart asks for Python and
# make, and its REST examples use curl.
SYSTEM_PROGRAMS = {"make", "curl"}
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
RECIPE_MARK = "<!-- scale-out recipe"


def shell_blocks(readme: Path) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", readme.read_text(), re.S | re.M)


def commands(block: str) -> Iterator[str]:
    """The block's commands: continued lines and multi-line quotes joined."""
    pending = ""
    for line in block.splitlines():
        pending += line + "\n"
        if line.endswith("\\"):
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        if pending.strip() and not pending.lstrip().startswith("#"):
            yield pending.strip()
        pending = ""
    assert not pending.strip(), f"an unfinished command: {pending!r}"


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))


def problems_of(command: str, activated: bool) -> list[str]:
    """What would fail if the command ran from the repository's folder."""
    words = shlex.split(command, comments=True)
    problems = []
    for word in words:
        # Command substitutions run too: `$(.venv/bin/python -c ...)`.
        inner = re.search(r"\$\((.*)\)", word)
        if inner:
            problems += problems_of(inner.group(1), activated)
    while words and ASSIGNMENT.match(words[0]):
        words.pop(0)
    if not words or words[0] == "export":
        return problems
    program, arguments = words[0], words[1:]
    if program == ".":
        return problems if (ROOT / arguments[0]).is_file() else [f"no file {arguments[0]}"]
    if program == "make":
        return problems + [f"no target {t}" for t in arguments if t not in make_targets()]
    if program in SYSTEM_PROGRAMS:
        return problems
    path = ROOT / program if "/" in program else ROOT / ".venv" / "bin" / program
    if "/" not in program and not activated:
        return [*problems, f"{program} is not on PATH after make install (write .venv/bin/)"]
    if not os.access(path, os.X_OK):
        return [*problems, f"{program} does not exist"]
    module = arguments[1] if arguments[:1] == ["-m"] else None
    if path.name.startswith("python") and module and importlib.util.find_spec(module) is None:
        problems.append(f"no module {module}")
    return problems


@pytest.mark.parametrize("readme", READMES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_printed_command_names_what_exists(readme: Path) -> None:
    blocks = shell_blocks(readme)
    assert blocks
    found = {}
    for block in blocks:
        activated = False
        for command in commands(block):
            found[command] = problems_of(command, activated)
            activated = activated or command.startswith(". .venv/bin/activate")
    assert {command: problems for command, problems in found.items() if problems} == {}


def test_the_check_catches_what_fails_outside_the_virtualenv() -> None:
    assert problems_of("python -m service", activated=False)
    assert problems_of("grpcurl -plaintext localhost:50051 list", activated=False)
    assert problems_of(".venv/bin/python -m no_such_module", activated=False)
    assert problems_of("X=$(python -c 'print(1)')", activated=False)
    assert problems_of("make no-such-target", activated=False)
    assert not problems_of("BATCH_TOKEN=t batchctl list", activated=True)


def quickstart_commands() -> list[str]:
    """The quickstart's block of commands for the terminal beside `make run`."""
    [_, block, *_] = shell_blocks(ROOT / "README.md")
    return list(commands(block))


async def run_shell(command: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_the_quickstart_runs_as_printed(tmp_path: Path) -> None:
    http, grpc = free_port(), free_port()
    env = batchd_env(
        tmp_path,
        BATCH_DEV_MODE="1",
        BATCH_API_TOKENS="dev-token:dev",  # as `make run`
        BATCH_SECRET_KEY="",
        BATCH_GRPC_ADDRESS=f"127.0.0.1:{grpc}",
        BATCH_HTTP_ADDRESS=f"127.0.0.1:{http}",
        BATCH_DEMO_UPSTREAM_ADDRESS=f"127.0.0.1:{free_port()}",
    )
    process, _ = await start_batchd(env, tmp_path)
    # The reader's shell: nothing of batchd's settings, batchctl's default target moved.
    shell_env = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_")}
    shell_env["BATCH_GRPC_TARGET"] = f"127.0.0.1:{grpc}"
    outputs: list[str] = []
    try:
        batch_id = ""
        for printed in quickstart_commands():
            command = printed.replace("localhost:8080", f"127.0.0.1:{http}")
            command = command.replace("localhost:50051", f"127.0.0.1:{grpc}")
            command = command.replace("BATCH_ID", batch_id)
            code, output = await run_shell(command, shell_env)
            assert code == 0, f"{printed}\n{output}"
            outputs.append(output)
            if not batch_id:
                batch_id = json.loads(output)["id"]
    finally:
        assert await process.stop() == 0, process.log()
    created, read, events, services, grpc_created, submitted = outputs
    assert json.loads(created)["batch_operations_count"] == 2
    assert json.loads(read)["batch_operations"]["pagination"]["count"] == 2
    assert "event: end\n" in events
    assert "batchd.v1.BatchService" in services
    assert json.loads(grpc_created)["batch"]["batch_operations_count"] == 1, grpc_created
    assert "5 operations, 5 ran (5 succeeded)" in submitted


def scale_out_recipe() -> str:
    text = (ROOT / "README.md").read_text()
    opening = text.index("```sh\n", text.index(RECIPE_MARK)) + len("```sh\n")
    return text[opening : text.index("\n```", opening)]


async def rpc_count(session: aiohttp.ClientSession, metrics_url: str) -> float:
    async with session.get(metrics_url) as response:
        text = await response.text()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("batchd_rpc_requests_total{")
    )


async def test_the_scale_out_recipe_runs_replicas_behind_one_gateway(
    postgres_server: postgres.Server, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    database = await postgres_server.create_database()  # empty: the recipe migrates it
    log_path = tmp_path / "recipe.log"
    ports = {port: str(free_port()) for port in ("50051", "50052", "9101", "9102", "8080")}
    script = scale_out_recipe()
    script = script.replace(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/batchd", postgres.url_of(database)
    )
    script = script.replace("https://api.example.com", f"{upstream_server[0]}/echo")
    for printed, free in ports.items():
        script = script.replace(f":{printed}", f":{free}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_")}
    env["BATCH_LOG_LEVEL"] = "WARNING"
    log = log_path.open("wb")
    shell = await asyncio.create_subprocess_exec(
        "bash",
        "-ec",
        script + "\nwait\n",
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,  # its own process group: the replicas end with it
    )
    base_url = f"http://127.0.0.1:{ports['8080']}"
    try:
        async with aiohttp.ClientSession(base_url=base_url) as session:
            await wait_until_healthy(session, shell, log_path)
            headers = {"Authorization": "Bearer dev-token"}
            operations = [{"http_method": "GET", "path": f"/item/{n}"} for n in range(20)]
            body = {"batch": {"batch_operations": operations}}
            async with session.post("/v1/batches", json=body, headers=headers) as response:
                assert response.status == 200, await response.text()
                batch_id = (await response.json())["id"]
            for _ in range(200):
                async with session.get(f"/v1/batches/{batch_id}", headers=headers) as response:
                    if (await response.json())["status"] == "completed":
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the batch did not complete")
            # The gateway spread its calls: each replica answered some.
            for metrics in (ports["9101"], ports["9102"]):
                assert await rpc_count(session, f"http://127.0.0.1:{metrics}/metrics") > 0
        sent = [r for r in upstream_server[1].requests if r.path.startswith("/echo/item/")]
        assert len(sent) == 20
    finally:
        if shell.returncode is None:
            os.killpg(shell.pid, signal.SIGTERM)
        await asyncio.wait_for(shell.wait(), 30)
        log.close()
        await postgres_server.drop_database(database)


async def wait_until_healthy(
    session: aiohttp.ClientSession, shell: asyncio.subprocess.Process, log_path: Path
) -> None:
    for _ in range(400):
        assert shell.returncode is None, f"the recipe's shell exited:\n{log_path.read_text()}"
        try:
            async with session.get("/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"the recipe's gateway did not become healthy:\n{log_path.read_text()}")
