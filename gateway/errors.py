"""The contract's error JSON, built from gateway checks, gRPC statuses and HTTP exceptions.

The service reports errors as rich statuses (google.rpc.Status): `ErrorInfo.reason`
is the contract `code`, and `BadRequest` field violations become `validation_errors`.
Anything the service did not describe becomes a 500 or 503 whose message says nothing
of our internals.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from batchd.error_summary import summary

log = logging.getLogger(__name__)

STATUS_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    414: "uri_too_long",
    422: "unprocessable_entity",
    429: "too_many_requests",
    500: "internal_server_error",
    503: "service_unavailable",
}
_HTTP_STATUS_OF_RPC = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.NOT_FOUND: 404,
    # A request the current state refuses (cancel a finished batch, reuse an
    # Idempotency-Key): well-formed but unprocessable, so 422 with the service's code.
    grpc.StatusCode.FAILED_PRECONDITION: 422,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
}
# gRPC request fields that the REST contract names differently.
_REST_NAMES = re.compile(r"^(page_size|order_by|statuses)\b")
_REST_NAME_OF = {"page_size": "limit", "order_by": "sort", "statuses": "status"}
# The same names, and the sort columns, where the service's descriptions use them.
_REST_WORDS = re.compile(r"\b(page_size|order_by|statuses|create_time|update_time)\b")
_REST_WORD_OF = {**_REST_NAME_OF, "create_time": "created_at", "update_time": "updated_at"}
UNAVAILABLE_MESSAGE = "The batch service is unavailable; retry later"
INTERNAL_MESSAGE = "Something went wrong on our side; it has been logged"
# The service speaks of gRPC metadata; a REST caller sent an HTTP header.
UNAUTHORIZED_MESSAGE = "Missing or unknown bearer token in the Authorization header"


@dataclass(frozen=True)
class ValidationError:
    attribute: str
    code: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "type": self.code.rsplit(".", 1)[-1],
            "code": self.code,
            "options": {},
            "message": self.message,
        }


@dataclass
class ApiProblem(Exception):
    """An error response in the contract's shape."""

    status: int
    code: str
    message: str
    validation_errors: Sequence[ValidationError] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    # The request's framing is lost (its body was not read whole): no next request.
    close_connection: bool = False

    def as_json(self) -> dict[str, Any]:
        name = status_name(self.status)
        return {
            "http_status": name,
            "type": name,
            "code": self.code,
            "message": self.message,
            "validation_errors": [error.as_json() for error in self.validation_errors],
        }


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_")


def bad_request(message: str, errors: Iterable[ValidationError] = ()) -> ApiProblem:
    return ApiProblem(400, "bad_request", message, tuple(errors))


def unprocessable(code: str, errors: Sequence[ValidationError]) -> ApiProblem:
    return ApiProblem(422, code, _summary(errors), tuple(errors))


def _summary(errors: Sequence[ValidationError]) -> str:
    return summary([(error.attribute, error.message) for error in errors])


def unavailable() -> ApiProblem:
    return ApiProblem(503, "service_unavailable", UNAVAILABLE_MESSAGE, headers={"Retry-After": "1"})


def internal() -> ApiProblem:
    return ApiProblem(500, "internal_server_error", INTERNAL_MESSAGE)


def from_rpc_error(error: grpc.aio.AioRpcError) -> ApiProblem:
    code = error.code()
    status = _HTTP_STATUS_OF_RPC.get(code)
    if status == 503:
        log.warning("gRPC backend unavailable: %s %s", code.name, error.details())
        return unavailable()
    rich = _rich_status(error)
    if rich is None or status is None:
        # Codes the service does not send on purpose, or a status without its
        # description (a client-side limit, say): a fault of ours.
        log.error("gRPC call failed: %s %s", code.name, error.details())
        return internal()
    reason, violations, retry_after = _details(rich)
    headers = {}
    if status == 429:
        headers["Retry-After"] = str(retry_after or 1)
    # With violations, the message is rebuilt so that it names fields as REST does.
    message = _summary(violations) if violations else rich.message
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
        message = UNAUTHORIZED_MESSAGE
    return ApiProblem(status, reason or status_name(status), message, violations, headers)


def _rich_status(error: grpc.aio.AioRpcError) -> Any:
    try:
        # An AioRpcError answers the Call methods that from_call reads.
        return rpc_status.from_call(cast(grpc.Call, error))
    except ValueError:
        return None


def _details(rich: Any) -> tuple[str, list[ValidationError], int | None]:
    reason, violations, retry_after = "", [], None
    for detail in rich.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [
                ValidationError(_rest_name(v.field), v.reason, _rest_words(v.description))
                for v in bad.field_violations
            ]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = max(1, math.ceil(retry.retry_delay.ToTimedelta().total_seconds()))
    return reason, violations, retry_after


def _rest_name(grpc_field: str) -> str:
    return _REST_NAMES.sub(lambda match: _REST_NAME_OF[match.group(1)], grpc_field)


def _rest_words(description: str) -> str:
    return _REST_WORDS.sub(lambda match: _REST_WORD_OF[match.group(1)], description)
