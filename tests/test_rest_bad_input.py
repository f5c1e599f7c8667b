"""Bad input to the REST gateway gets the contract's error JSON with the right status."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.processes import Process, gateway_env, start_gateway
from tests.rest import AUTH, assert_error, attributes, call
from tests.shared_stack import SharedStack

GET = {"http_method": "GET", "path": "/echo"}
OPERATION_WITH_BODY = (
    b'{"batch": {"batch_operations": [{"http_method": "GET", "path": "/x", "body": %b}]}}'
)


def batch_of(*operations: Any) -> dict[str, Any]:
    return {"batch": {"batch_operations": list(operations)}}


async def post_raw(api: aiohttp.ClientSession, data: bytes, status: int) -> Any:
    headers = {"Content-Type": "application/json"}
    return await call(api, "POST", "/v1/batches", status, data=data, headers=headers)


@pytest.mark.parametrize(
    "data",
    [
        b'{"batch":',
        b"",
        b"not json",
        b"\xff\xfe{}",
        OPERATION_WITH_BODY % b"NaN",
        b"[" * 100_000 + b"]" * 100_000,
        OPERATION_WITH_BODY % '{"text": "\ud800"}'.encode("utf-8", "surrogatepass"),
    ],
    ids=[
        "truncated",
        "empty",
        "not-json",
        "not-utf8",
        "nan",
        "deep",
        "encoded-surrogate",
    ],
)
async def test_malformed_json_is_a_400(api: aiohttp.ClientSession, data: bytes) -> None:
    body = await post_raw(api, data, 400)
    assert_error(body, "bad_request", "bad_request")


@pytest.mark.parametrize("number", [b"1e999", b"1" + b"0" * 30, b"1" + b"0" * 5000])
async def test_a_number_a_double_cannot_carry_is_a_422_naming_it(
    api: aiohttp.ClientSession, number: bytes
) -> None:
    body = await post_raw(api, OPERATION_WITH_BODY % (b'{"n": ' + number + b"}"), 422)
    assert_error(body, "unprocessable_entity", "batch.invalid")
    assert attributes(body) == ["batch_operations[0].body.n"]


@pytest.mark.parametrize(
    "document",
    [
        [],
        "batch",
        {},
        {"batch": []},
        {"batch": None},
        {"batch": {"batch_operations": {}}},
        {"batch": {"batch_operations": "GET /x"}},
        batch_of(5),
        batch_of(GET, ["GET", "/x"]),
    ],
)
async def test_a_body_of_the_wrong_shape_is_a_400(
    api: aiohttp.ClientSession, document: Any
) -> None:
    body = await post_raw(api, json.dumps(document).encode(), 400)
    assert_error(body, "bad_request", "bad_request")


async def unprocessable(api: aiohttp.ClientSession, document: Any) -> Any:
    body = await call(api, "POST", "/v1/batches", 422, json=document)
    assert_error(body, "unprocessable_entity", "batch.invalid")
    return body


@pytest.mark.parametrize("method", ["FETCH", "get", "", 5, None, ["GET"], {"m": "GET"}])
async def test_unknown_http_methods_are_named(api: aiohttp.ClientSession, method: Any) -> None:
    body = await unprocessable(api, batch_of(GET, {"http_method": method, "path": "/x"}))
    assert attributes(body) == ["batch_operations[1].http_method"]
    assert body["validation_errors"][0]["code"] == "batch_operation.http_method.invalid"


async def test_a_missing_http_method_is_named(api: aiohttp.ClientSession) -> None:
    body = await unprocessable(api, batch_of({"path": "/x"}))
    assert attributes(body) == ["batch_operations[0].http_method"]


@pytest.mark.parametrize(
    "path",
    [
        "v1/products",
        "//evil.example/x",
        "http://evil.example/x",
        "https:/x",
        "/a\\b",
        "\\\\evil.example/x",
        "/a\u0001b",
        "/a\nb",
        "/a b",
        "/a/../b",
        "/..",
        "/a/%2e%2e/b",
        "/a/%2E./b",
        "/a/./b",
        "/a?x=1",
        "/a#frag",
        "/caf\u00e9",
    ],
)
async def test_unsafe_paths_are_refused(api: aiohttp.ClientSession, path: str) -> None:
    body = await unprocessable(api, batch_of(GET, GET, {"http_method": "GET", "path": path}))
    assert attributes(body) == ["batch_operations[2].path"]
    assert body["validation_errors"][0]["code"].startswith("batch_operation.path.")


async def test_a_user_info_path_is_only_a_path(api: aiohttp.ClientSession) -> None:
    # '@' is a valid path character: "/x@evil.example" stays on the upstream.
    body = await call(api, "POST", "/v1/batches", 200, json=batch_of({**GET, "path": "/x@y"}))
    assert body["batch_operations_count"] == 1


@pytest.mark.parametrize("path", [None, "", 5, ["/x"]])
async def test_a_missing_or_mistyped_path_is_named(api: aiohttp.ClientSession, path: Any) -> None:
    body = await unprocessable(api, batch_of({"http_method": "GET", "path": path}))
    assert attributes(body) == ["batch_operations[0].path"]


@pytest.mark.parametrize("field", ["body", "query_params"])
@pytest.mark.parametrize("value", [[], "text", 5, True])
async def test_body_and_query_params_must_be_objects(
    api: aiohttp.ClientSession, field: str, value: Any
) -> None:
    body = await unprocessable(api, batch_of(GET, {**GET, field: value}))
    assert attributes(body) == [f"batch_operations[1].{field}"]
    assert body["validation_errors"][0]["code"] == f"batch_operation.{field}.invalid"


async def test_every_problem_of_a_batch_is_listed(api: aiohttp.ClientSession) -> None:
    body = await unprocessable(
        api,
        batch_of(
            {"http_method": "FETCH", "path": "/x"},
            GET,
            {"http_method": "GET", "path": "/../x"},
        ),
    )
    assert attributes(body) == ["batch_operations[0].http_method", "batch_operations[2].path"]


@pytest.mark.parametrize("document", [batch_of(), {"batch": {}}])
async def test_an_empty_batch_is_a_422(api: aiohttp.ClientSession, document: Any) -> None:
    body = await unprocessable(api, document)
    assert attributes(body) == ["batch_operations"]
    assert body["validation_errors"][0]["code"] == "batch.batch_operations.blank"


async def test_a_batch_over_the_maximum_is_a_422(api: aiohttp.ClientSession) -> None:
    # The service's default maximum is 1,000 operations.
    body = await unprocessable(api, batch_of(*[GET] * 1001))
    assert attributes(body) == ["batch_operations"]
    assert body["validation_errors"][0]["code"] == "batch.batch_operations.too_long"


@pytest.mark.parametrize("levels", [33, 40, 500])
async def test_a_body_nested_too_deep_is_a_422(api: aiohttp.ClientSession, levels: int) -> None:
    nested: dict[str, Any] = {}
    for _ in range(levels - 1):
        nested = {"n": nested}
    body = await unprocessable(
        api, batch_of({**GET, "body": nested}, {**GET, "query_params": nested})
    )
    assert attributes(body) == ["batch_operations[0].body", "batch_operations[1].query_params"]
    assert body["validation_errors"][0]["code"] == "batch_operation.body.too_deep"


async def test_a_body_nested_32_deep_is_accepted(api: aiohttp.ClientSession) -> None:
    nested: dict[str, Any] = {}
    for _ in range(31):
        nested = {"n": nested}
    created = await call(api, "POST", "/v1/batches", 200, json=batch_of({**GET, "body": nested}))
    assert created["batch_operations_count"] == 1


async def test_an_oversized_body_is_a_413(api: aiohttp.ClientSession) -> None:
    # The gateway's default limit is 10 MiB.
    filler = "x" * (11 * 1024 * 1024)
    body = await call(
        api, "POST", "/v1/batches", 413, json=batch_of({**GET, "body": {"filler": filler}})
    )
    assert_error(body, "payload_too_large", "payload_too_large")


async def test_a_batch_too_large_for_grpc_is_a_413(api: aiohttp.ClientSession) -> None:
    # About 4 MB of JSON, but some 22 MB once each number is a protobuf Value.
    zeros = b"[" + b"0," * 2_000_000 + b"0]"
    body = await post_raw(api, OPERATION_WITH_BODY % (b'{"zeros": ' + zeros + b"}"), 413)
    assert_error(body, "payload_too_large", "payload_too_large")


@pytest.mark.parametrize(
    ("query", "attribute"),
    [
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=101", "limit"),
        ("limit=99999999999", "limit"),
        ("page=0", "page"),
        ("sort=created_at:sideways", "sort"),
        ("sort=id:asc", "sort"),
        ("status[]=bogus", "status[0]"),
        ("status[]=completed&status[]=failed", "status[1]"),
    ],
)
async def test_out_of_range_list_parameters_are_a_422(
    api: aiohttp.ClientSession, query: str, attribute: str
) -> None:
    body = await call(api, "GET", f"/v1/batches?{query}", 422)
    assert_error(body, "unprocessable_entity")
    assert attributes(body) == [attribute]


async def test_an_unknown_operation_status_is_a_422(api: aiohttp.ClientSession) -> None:
    body = await call(api, "GET", "/v1/batch_operations?status[]=done", 422)
    assert_error(body, "unprocessable_entity")
    assert attributes(body) == ["status[0]"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/batches?limit=ten",
        "/v1/batches?limit=1.5",
        "/v1/batches?limit=",
        "/v1/batches?page=first",
        "/v1/batches?sort=created_at",
        "/v1/batches?sort=created_at:desc:x",
        "/v1/batches?sort=",
        "/v1/batches?ids=" + str(uuid.uuid4()),
        "/v1/batches?ids[]=not-a-uuid",
        "/v1/batches?status=completed",
        "/v1/batch_operations?batch_ids[]=zzz",
        "/v1/batch_operations?batch_ids=" + str(uuid.uuid4()),
        "/v1/batches?expand[]=nope",
        "/v1/batches?expand[]=batch",
        "/v1/batches?expand=batch_operations",
        "/v1/batches/" + str(uuid.uuid4()) + "?expand[]=batch",
        "/v1/batch_operations?expand[]=batch_operations",
        "/v1/batch_operations/" + str(uuid.uuid4()) + "?expand[]=batch_operations",
    ],
)
async def test_parameters_of_the_wrong_form_are_a_400(
    api: aiohttp.ClientSession, path: str
) -> None:
    body = await call(api, "GET", path, 400)
    assert_error(body, "bad_request", "bad_request")


async def test_an_unknown_expand_on_create_is_a_400(api: aiohttp.ClientSession) -> None:
    body = await call(api, "POST", "/v1/batches?expand[]=batch", 400, json=batch_of(GET))
    assert_error(body, "bad_request", "bad_request")
    assert attributes(body) == ["expand[0]"]


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v1/batches/not-a-uuid", "batch.not_found"),
        ("/v1/batches/" + str(uuid.uuid4()), "batch.not_found"),
        ("/v1/batches/%ff%fe", "batch.not_found"),
        ("/v1/batch_operations/123", "batch_operation.not_found"),
        ("/v1/batch_operations/" + str(uuid.uuid4()), "batch_operation.not_found"),
    ],
)
async def test_unknown_ids_are_a_404(api: aiohttp.ClientSession, path: str, code: str) -> None:
    body = await call(api, "GET", path, 404)
    assert_error(body, "not_found", code)


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/batches/x/y", "/v2/batches", "/v1/nothing"])
async def test_unknown_routes_are_a_404(api: aiohttp.ClientSession, path: str) -> None:
    body = await call(api, "GET", path, 404)
    assert_error(body, "not_found", "not_found")


async def test_a_wrong_method_is_a_405_in_the_same_shape(api: aiohttp.ClientSession) -> None:
    body = await call(api, "DELETE", "/v1/batches", 405)
    assert_error(body, "method_not_allowed", "method_not_allowed")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dG9rZW4tYTo="},
        {"Authorization": AUTH["Authorization"].removeprefix("Bearer ")},
        {"Authorization": "Bearer t\u00f6ken"},
    ],
    ids=["missing", "unknown", "empty", "basic", "no-scheme", "not-ascii"],
)
async def test_missing_or_unknown_tokens_are_a_401(
    shared_stack: SharedStack, headers: dict[str, str]
) -> None:
    async with aiohttp.ClientSession(base_url=shared_stack.base_url) as bare:
        for method, path, kwargs in (
            ("GET", "/v1/batches", {}),
            ("GET", f"/v1/batch_operations/{uuid.uuid4()}", {}),
            ("POST", "/v1/batches", {"json": batch_of(GET)}),
        ):
            body = await call(bare, method, path, 401, headers=headers, **kwargs)
            assert_error(body, "unauthorized", "unauthorized")
            # REST callers send a header; gRPC's word for it would mislead them.
            assert "Authorization header" in body["message"], body
            assert "metadata" not in body["message"], body


async def test_a_stopped_service_means_503(
    gateway: tuple[Process, str], service: tuple[Process, dict[str, str]]
) -> None:
    async with aiohttp.ClientSession(base_url=gateway[1], headers=AUTH) as http:
        await call(http, "GET", "/v1/batches", 200)
        assert await service[0].stop() == 0
        for path in ("/v1/batches", "/v1/batch_operations", "/healthz"):
            body = await call(http, "GET", path, 503)
            assert_error(body, "service_unavailable", "service_unavailable")
        body = await call(http, "POST", "/v1/batches", 503, json=batch_of(GET))
        assert_error(body, "service_unavailable")


async def test_a_stuck_service_means_503_not_a_hang(
    service: tuple[Process, dict[str, str]], tmp_path: Path
) -> None:
    env = gateway_env(service[1]["BATCH_GRPC_ADDRESS"], BATCH_RPC_TIMEOUT="1")
    gateway, base_url = await start_gateway(env, tmp_path / "stuck-gateway.log")
    assert service[0].process is not None
    service[0].process.send_signal(signal.SIGSTOP)
    try:
        async with aiohttp.ClientSession(base_url=base_url, headers=AUTH) as http:
            body = await asyncio.wait_for(call(http, "GET", "/v1/batches", 503), 30)
            assert_error(body, "service_unavailable")
            body = await asyncio.wait_for(call(http, "GET", "/healthz", 503), 30)
            assert_error(body, "service_unavailable")
    finally:
        service[0].process.send_signal(signal.SIGCONT)
        await gateway.stop()
