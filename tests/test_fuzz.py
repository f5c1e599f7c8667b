"""Schemathesis against the running gateway and service: whatever the served OpenAPI
document allows (and, in negative mode, what it forbids) gets no 5xx and only
documented answers. Bounded: a fixed number of derandomized examples per operation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.app import create_app
from gateway.openapi import DOCUMENT_PATH
from gateway.settings import GatewaySettings
from tests.shared_stack import SharedStack, fresh_token

EXAMPLES_PER_OPERATION = 25
# A stream never ends, so it cannot be fuzzed request by request.
STREAMS = {("GET", "/v1/batches/{id}/events")}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def fuzz_cases() -> list[tuple[str, str, GenerationMode]]:
    """Documented operations the gateway serves, streams aside; negative data only
    where there is input to get wrong."""
    document = json.loads(DOCUMENT_PATH.read_text())
    served = {
        (route.method, route.resource.canonical)
        for route in create_app(GatewaySettings()).router.routes()
        if route.resource is not None
    }
    cases = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or (method.upper(), path) not in served - STREAMS:
                continue
            takes_input = "parameters" in item or operation.keys() & {"parameters", "requestBody"}
            cases.append((method.upper(), path, GenerationMode.POSITIVE))
            if takes_input:
                cases.append((method.upper(), path, GenerationMode.NEGATIVE))
    return cases


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    fuzz_cases(),
    ids=[f"{method} {path} {mode.value}" for method, path, mode in fuzz_cases()],
)
async def test_the_gateway_answers_as_its_openapi_document_says(
    shared_stack: SharedStack, method: str, path: str, mode: GenerationMode
) -> None:
    # Off the event loop: the shared stack's upstream runs on it and must keep answering.
    await asyncio.to_thread(fuzz, shared_stack.base_url, method, path, mode)


def fuzz(base_url: str, method: str, path: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operation = schema[path][method]
    headers = {"Authorization": f"Bearer {fresh_token()}"}

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        # The loaded machine makes generation slow at times; that is no failure of ours.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def answers_as_documented(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=CHECKS)

    with requests.Session() as session:
        answers_as_documented()
