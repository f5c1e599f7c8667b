"""The execution engine against a real upstream, over real gRPC."""

from __future__ import annotations

from pathlib import Path

import grpc

from batchd.json_values import from_value
from batchd.messages import MAX_MESSAGE_BYTES
from batchd.v1 import batch_pb2, batch_pb2_grpc
from service.database import open_database
from service.settings import ServiceSettings
from service.store import BATCH_BY_ID
from tests.grpc_client import GET, POST, bearer, operation, run_batch
from tests.processes import TOKEN, Process, free_port, service_env, serving, start_service
from tests.upstream import UpstreamLog

UNSTORABLE_KINDS = ("nul", "deep", "nan", "surrogate", "surrogate_bytes", "huge_number")


async def test_executes_operations_and_records_responses(
    stub: batch_pb2_grpc.BatchServiceStub, upstream_server: tuple[str, UpstreamLog]
) -> None:
    batch = await run_batch(
        stub,
        [
            operation(GET, "/echo/products", query_params={"ids": ["a", "b"], "f": {"x": True}}),
            operation(POST, "/echo/products", body={"product": {"name": "Test", "qty": 2}}),
            operation(GET, "/status/404"),
        ],
    )
    assert batch.finished_batch_operations_count == 3
    get, post, missing = batch.batch_operations
    assert get.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
    assert get.response_status == 200
    assert from_value(get.response_body) == {
        "method": "GET",
        "path": "/echo/products",
        "query": "f[x]=true&ids[]=a&ids[]=b",
        "body": None,
    }
    assert from_value(post.response_body)["body"] == {"product": {"name": "Test", "qty": 2}}
    assert missing.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
    assert missing.response_status == 404
    seen = upstream_server[1].requests
    assert {r.headers["Idempotency-Key"] for r in seen} == {op.id for op in batch.batch_operations}
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in seen)


async def test_cookies_an_upstream_sets_are_never_sent_back(
    upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    # The session is shared by every batch of every tenant: a cookie kept from
    # one operation's response would speak for its caller in the next ones.
    # By name, not by IP address: aiohttp's default jar ignores cookies of IP hosts.
    by_name = upstream_server[0].replace("127.0.0.1", "localhost")
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'batchd.db'}", by_name)
    in_order = batch_pb2.ExecutionOptions(sequential=True)
    async with serving(env, tmp_path / "service.log") as (_, stub):
        await run_batch(
            stub, [operation(GET, "/cookie"), operation(GET, "/echo/after")], options=in_order
        )
    set_cookie, after = upstream_server[1].requests
    assert set_cookie.path == "/cookie" and after.path == "/echo/after"
    assert "Cookie" not in after.headers


async def test_the_largest_operation_reads_back_with_the_response_that_grows_most(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    """An operation of the largest size CreateBatch accepts, answered with the stored
    response that grows most as protobuf, still fits in a reply: it can be read back."""
    response_limit = 1024 * 1024
    env = service_env(
        database_url, upstream_server[0], BATCH_MAX_RESPONSE_BYTES=str(response_limit)
    )
    settings = ServiceSettings(api_tokens="t:t", max_response_bytes=response_limit)
    largest = operation(POST, "/zeros", query_params={"bytes": response_limit}, body={})
    data = ""
    while (room := settings.max_operation_bytes - largest.ByteSize()) > 0:
        data += "x" * max(1, room - 8)  # lengths grow with the text: approach from below
        largest.body.update({"data": data})
    if room < 0:
        largest.body.update({"data": data[:room]})
    assert largest.ByteSize() <= settings.max_operation_bytes
    async with serving(env, tmp_path / "service.log") as (_, stub):
        batch = await run_batch(stub, [largest], timeout=60)
        listed = await stub.ListBatchOperations(
            batch_pb2.ListBatchOperationsRequest(batch_ids=[batch.id], page_size=1),
            metadata=bearer(),
        )
        reply = await stub.GetBatchOperation(
            batch_pb2.GetBatchOperationRequest(id=listed.batch_operations[0].id),
            metadata=bearer(),
        )
    assert listed.batch_operations[0] == reply.batch_operation
    read = reply.batch_operation
    assert read.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
    assert len(read.response_body.list_value.values) == (response_limit - 1) // 2
    # Within 100 kB of the limit: the bound is tight, not just safe.
    assert MAX_MESSAGE_BYTES - 100_000 < reply.ByteSize() <= MAX_MESSAGE_BYTES


async def test_records_failures_timeouts_and_bounded_bodies(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    env = service_env(
        database_url,
        upstream_server[0],
        BATCH_OPERATION_TIMEOUT="1",
        BATCH_MAX_RESPONSE_BYTES="1000",
    )
    process = await start_service(env, tmp_path / "service.log")
    try:
        async with grpc.aio.insecure_channel(env["BATCH_GRPC_ADDRESS"]) as channel:
            batch = await run_batch(
                batch_pb2_grpc.BatchServiceStub(channel),
                [
                    operation(GET, "/slow/5"),
                    operation(GET, "/text"),
                    operation(GET, "/huge", query_params={"bytes": 5000}),
                    operation(GET, "/empty"),
                    operation(GET, "/cutoff"),
                    operation(GET, "/redirect"),
                    *(operation(GET, f"/raw/{kind}") for kind in UNSTORABLE_KINDS),
                ],
            )
    finally:
        assert await process.stop() == 0
    slow, text, huge, empty, cut_off, redirect, *unstorable = batch.batch_operations
    assert slow.status == batch_pb2.BATCH_OPERATION_STATUS_TIMED_OUT
    assert slow.failure_reason == "deadline_exceeded"
    assert not slow.HasField("response_status")
    assert from_value(text.response_body) == {
        "batchd_unparsed_body": "non_json",
        "content_type": "text/html",
        "size_bytes": 21,
        "preview": "<html>not json</html>",
    }
    huge_body = from_value(huge.response_body)
    assert huge_body["batchd_unparsed_body"] == "too_large"
    assert huge_body["size_bytes"] > 5000 and len(huge_body["preview"]) == 1000
    assert empty.response_status == 204 and from_value(empty.response_body) is None
    assert cut_off.status == batch_pb2.BATCH_OPERATION_STATUS_FAILED
    assert cut_off.failure_reason in ("response_cut_off", "server_disconnected")
    assert redirect.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
    assert redirect.response_status == 302
    assert [r.path for r in upstream_server[1].requests].count("/redirect") == 1
    for op in unstorable:
        body = from_value(op.response_body)
        assert body["batchd_unparsed_body"] in ("unstorable_json", "non_json"), op.path
        assert op.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED


async def test_json_bodies_read_the_same_in_every_encoding(
    stub: batch_pb2_grpc.BatchServiceStub, upstream_server: tuple[str, UpstreamLog]
) -> None:
    encodings = ("utf8", "utf8_bom", "utf16", "utf16le", "utf32le")
    batch = await run_batch(stub, [operation(GET, f"/encoded/{name}") for name in encodings])
    for op in batch.batch_operations:
        assert from_value(op.response_body) == {"name": "café", "sizes": [1, 2.5]}, op.path


async def test_json_numbers_are_stored_by_value_whatever_their_spelling(
    stub: batch_pb2_grpc.BatchServiceStub, upstream_server: tuple[str, UpstreamLog]
) -> None:
    kinds = ("tiny", "long_fraction", "null", "uint64")
    batch = await run_batch(stub, [operation(GET, f"/numbers/{kind}") for kind in kinds])
    tiny, long_fraction, null, uint64 = batch.batch_operations
    for op in (tiny, long_fraction):
        assert op.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED, op.failure_reason
        assert from_value(op.response_body) == {"x": 0}
    assert null.status == batch_pb2.BATCH_OPERATION_STATUS_COMPLETED
    assert from_value(null.response_body) is None
    # Valid JSON, only beyond what callers may send: kept, as the double it reads back as.
    assert from_value(uint64.response_body) == {"x": float(12345678901234567890)}


async def test_retries_idempotent_operations_honouring_retry_after(
    stub: batch_pb2_grpc.BatchServiceStub, upstream_server: tuple[str, UpstreamLog]
) -> None:
    batch = await run_batch(
        stub,
        [
            operation(GET, "/flaky/get/2/503"),
            operation(
                batch_pb2.HTTP_METHOD_PUT, "/flaky/put/1/429", query_params={"retry_after": 1}
            ),
            operation(POST, "/flaky/post/1/503"),
        ],
    )
    get, put, post = batch.batch_operations
    assert (get.response_status, get.attempts) == (200, 3)
    assert (put.response_status, put.attempts) == (200, 2)
    # A POST that reached the upstream is never re-sent.
    assert (post.response_status, post.attempts) == (503, 1)
    put_times = [r for r in upstream_server[1].requests if r.path.startswith("/flaky/put")]
    assert len(put_times) == 2


async def test_connection_refused_fails_after_retries(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    closed_port = free_port()
    env = service_env(database_url, f"http://127.0.0.1:{closed_port}", BATCH_MAX_RETRIES="2")
    async with serving(env, tmp_path / "service.log") as (_, stub):
        batch = await run_batch(stub, [operation(GET, "/a"), operation(POST, "/b", body={"x": 1})])
    for op in batch.batch_operations:
        assert op.status == batch_pb2.BATCH_OPERATION_STATUS_FAILED
        assert op.failure_reason == "connection_refused"
        # Refused connections never reached the upstream: POST may be retried too.
        assert op.attempts == 3


async def test_small_batch_is_not_starved_by_a_huge_one(
    database_url: str, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    env = service_env(
        database_url, upstream_server[0], BATCH_MAX_IN_FLIGHT="8", BATCH_MAX_IN_FLIGHT_PER_BATCH="4"
    )
    async with serving(env, tmp_path / "service.log") as (_, stub):
        huge = await stub.CreateBatch(
            batch_pb2.CreateBatchRequest(
                batch=batch_pb2.Batch(
                    batch_operations=[operation(GET, f"/slow/0.1/{i}") for i in range(200)]
                )
            ),
            metadata=bearer(),
        )
        await run_batch(stub, [operation(GET, f"/slow/0.1/small-{i}") for i in range(8)])
        reply = await stub.GetBatch(batch_pb2.GetBatchRequest(id=huge.batch.id), metadata=bearer())
    assert reply.batch.status == batch_pb2.BATCH_STATUS_IN_PROGRESS
    assert reply.batch.finished_batch_operations_count < 200


async def test_credentials_are_sealed_and_erased_when_the_batch_completes(
    service: tuple[Process, dict[str, str]], stub: batch_pb2_grpc.BatchServiceStub
) -> None:
    batch = await run_batch(stub, [operation(GET, "/echo/x")])
    url = service[1]["BATCH_DATABASE_URL"]
    database = open_database(url)
    async with database.read() as connection:
        row = (await connection.execute(BATCH_BY_ID, {"id": batch.id, "tenant": "tenant-a"})).one()
    await database.dispose()
    assert row.sealed_authorization is None
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite+aiosqlite:///")
        raw = b"".join(Path(path + suffix).read_bytes() for suffix in ("", "-wal"))
        assert TOKEN.encode() not in raw
    assert TOKEN not in service[0].log()
