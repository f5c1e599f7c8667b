"""A client generated from gateway/openapi.json by openapi-python-client keeps every
documented error response as a typed model, and that model reads the gateway's answers."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gateway.openapi import DOCUMENT_PATH
from tests.processes import TOKEN
from tests.shared_stack import SharedStack

BIN = Path(sys.executable).parent
PACKAGE = "batchd_rest_api_client"
UNKNOWN_ID = "4c1ec4d4-4b0f-4f4e-9a8e-000000000000"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The generated package's directory, importable while the module's tests run."""
    directory = tmp_path_factory.mktemp("openapi-client")
    # The results export's JSON lines are text to a generated client, as a user configures it.
    config = directory / "config.json"
    config.write_text(
        json.dumps({"content_type_overrides": {"application/x-ndjson": "text/plain"}})
    )
    command: list[str | Path] = [BIN / "openapi-python-client", "generate", "--path", DOCUMENT_PATH]
    run = subprocess.run(
        [*command, "--meta", "none", "--config", config],
        cwd=directory,
        # Its post-generation hooks run ruff, from this virtualenv.
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # It warns, and still succeeds, when it drops a response it cannot type.
    assert run.returncode == 0, run.stdout + run.stderr
    assert "warning" not in (run.stdout + run.stderr).lower(), run.stdout + run.stderr
    sys.path.insert(0, str(directory))
    try:
        yield directory / PACKAGE
    finally:
        sys.path.remove(str(directory))
        for name in [name for name in sys.modules if name.startswith(PACKAGE)]:
            del sys.modules[name]


def documented_error_responses() -> list[tuple[str, str, str]]:
    document = json.loads(DOCUMENT_PATH.read_text())
    return [
        (path, method, status)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
        for status in operation["responses"]
        if status >= "400"
    ]


def api_module(operation_id: str) -> ModuleType:
    """The generated module of one operation (`getBatch` is `api.<tag>.get_batch`)."""
    name = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", operation_id).lower()
    document = json.loads(DOCUMENT_PATH.read_text())
    [tag] = {
        operation["tags"][0]
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and operation.get("operationId") == operation_id
    }
    return importlib.import_module(f"{PACKAGE}.api.{tag}.{name}")


def test_every_documented_error_response_is_parsed_into_a_model(generated: Path) -> None:
    document = json.loads(DOCUMENT_PATH.read_text())
    errors = documented_error_responses()
    assert len(errors) >= 29
    for path, method, status in errors:
        operation_id = document["paths"][path][method]["operationId"]
        source = Path(api_module(operation_id).__file__ or "").read_text()
        parsing = re.search(
            rf"if response\.status_code == {status}:\n\s+response_{status} = (\w+)\.from_dict",
            source,
        )
        assert parsing is not None, f"{method.upper()} {path} {status} is not parsed"
        assert parsing.group(1).endswith("Error"), parsing.group(1)


async def test_the_typed_errors_read_the_gateways_answers(
    generated: Path, shared_stack: SharedStack
) -> None:
    client_module: Any = importlib.import_module(f"{PACKAGE}.client")
    models: Any = importlib.import_module(f"{PACKAGE}.models")
    get_batch: Any = api_module("getBatch")
    create_batch: Any = api_module("createBatch")
    client = client_module.AuthenticatedClient(base_url=shared_stack.base_url, token=TOKEN)
    anonymous = client_module.Client(base_url=shared_stack.base_url)

    missing = (await get_batch.asyncio_detailed(UNKNOWN_ID, client=client)).parsed
    assert isinstance(missing, models.NotFoundError)
    assert missing.http_status.value == missing.type_.value == "not_found"
    assert missing.code == "batch.not_found"

    refused = (await get_batch.asyncio_detailed(UNKNOWN_ID, client=anonymous)).parsed
    assert isinstance(refused, models.UnauthorizedError)
    assert refused.code == "unauthorized"

    body = models.CreateBatchRequest.from_dict(
        {"batch": {"batch_operations": [{"http_method": "GET", "path": "no-slash"}]}}
    )
    invalid = (await create_batch.asyncio_detailed(client=client, body=body)).parsed
    assert isinstance(invalid, models.UnprocessableEntityError)
    [problem] = invalid.validation_errors
    assert isinstance(problem, models.ValidationError)
    assert problem.attribute == "batch_operations[0].path"
