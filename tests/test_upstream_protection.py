"""Protecting the upstream: 429 retried for every method, fleet-wide rate limits in the
database, and adaptive back-off from the upstream's own signals."""

from __future__ import annotations

from batchd.v1 import batch_pb2, batch_pb2_grpc
from tests.grpc_client import GET, POST, operation, run_batch
from tests.upstream import UpstreamLog

PATCH = batch_pb2.HTTP_METHOD_PATCH


async def test_a_429_is_retried_for_every_method_with_its_idempotency_key(
    stub: batch_pb2_grpc.BatchServiceStub, upstream_server: tuple[str, UpstreamLog]
) -> None:
    batch = await run_batch(
        stub,
        [
            operation(POST, "/flaky/post/1/429", body={"n": 1}, query_params={"retry_after": 1}),
            operation(PATCH, "/flaky/patch/2/429", body={"n": 2}),
            operation(GET, "/flaky/get/1/429"),
            # A 503 may come after the upstream acted: a POST is still never re-sent.
            operation(POST, "/flaky/post503/1/503", body={"n": 3}),
        ],
    )
    post, patch, get, post_503 = batch.batch_operations
    assert (post.status, post.response_status, post.attempts) == (
        batch_pb2.BATCH_OPERATION_STATUS_COMPLETED,
        200,
        2,
    )
    assert (patch.response_status, patch.attempts) == (200, 3)
    assert (get.response_status, get.attempts) == (200, 2)
    assert (post_503.response_status, post_503.attempts) == (503, 1)
    sends = upstream_server[1].by_idempotency_key()
    assert (sends[post.id], sends[patch.id], sends[post_503.id]) == (2, 3, 1)
    post_sends = [r for r in upstream_server[1].requests if r.path.startswith("/flaky/post/")]
    assert [r.body for r in post_sends] == [{"n": 1}, {"n": 1}]
