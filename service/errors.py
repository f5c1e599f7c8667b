"""Errors the API reports, carried as rich gRPC statuses (google.rpc.Status).

Every error names a machine-readable code in an `ErrorInfo` detail (such as
`batch.not_found`); validation errors add a `BadRequest` with one field
violation per problem, whose `reason` is the problem's code. The gateway turns
both into the REST contract's error JSON.

A status travels in the trailers, which grpc caps at 16 KiB (and base64 makes the
details a third larger): past that the client sees RESOURCE_EXHAUSTED instead of
the error. So a BadRequest carries the violations that fit in
VIOLATIONS_BUDGET_BYTES, each description cut to MAX_DESCRIPTION_CHARS, and one
last violation saying how many more there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from batchd.error_summary import summary

ERROR_DOMAIN = "batchd"
VIOLATIONS_BUDGET_BYTES = 6 * 1024
MAX_DESCRIPTION_CHARS = 300
MORE_VIOLATIONS = "violations.more"


@dataclass(frozen=True)
class Violation:
    field: str
    code: str
    message: str


@dataclass
class ApiError(Exception):
    status: grpc.StatusCode
    code: str
    message: str
    violations: list[Violation] = field(default_factory=list)

    def extra_details(self) -> list[object]:
        """More google.rpc details a subclass sends along."""
        return []

    def to_status(self) -> grpc.Status:
        details = [_packed(error_details_pb2.ErrorInfo(reason=self.code, domain=ERROR_DOMAIN))]
        details.extend(_packed(detail) for detail in self.extra_details())
        if self.violations:
            bad_request = error_details_pb2.BadRequest(field_violations=_carried(self.violations))
            details.append(_packed(bad_request))
        status = status_pb2.Status(
            code=getattr(code_pb2, self.status.name), message=self.message, details=details
        )
        return rpc_status.to_status(status)


class RetryLater(ApiError):
    """RESOURCE_EXHAUSTED with a RetryInfo detail: the gateway's 429 and Retry-After."""

    def __init__(self, code: str, message: str, retry_after: float) -> None:
        super().__init__(grpc.StatusCode.RESOURCE_EXHAUSTED, code, message)
        self.retry_after = retry_after

    def extra_details(self) -> list[object]:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(max(1, int(self.retry_after * 1000)))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]


def _carried(violations: list[Violation]) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The violations that fit in the budget, then, if any did not, how many more."""
    carried: list[error_details_pb2.BadRequest.FieldViolation] = []
    # Room for the last one, which says how many more there are.
    left = VIOLATIONS_BUDGET_BYTES - 200
    for index, violation in enumerate(violations):
        field_violation = error_details_pb2.BadRequest.FieldViolation(
            field=violation.field[:MAX_DESCRIPTION_CHARS],
            description=violation.message[:MAX_DESCRIPTION_CHARS],
            reason=violation.code[:MAX_DESCRIPTION_CHARS],
        )
        left -= field_violation.ByteSize() + 4  # its tag and length
        if left < 0:
            more = len(violations) - index
            carried.append(
                error_details_pb2.BadRequest.FieldViolation(
                    field=field_violation.field,
                    description=f"and {more} more problems from here on, not listed",
                    reason=MORE_VIOLATIONS,
                )
            )
            break
        carried.append(field_violation)
    return carried


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def not_found(kind: str, object_id: str) -> ApiError:
    return ApiError(
        grpc.StatusCode.NOT_FOUND,
        f"{kind}.not_found",
        f"Unable to find {kind} with id='{object_id}'",
    )


def invalid(code: str, violations: list[Violation]) -> ApiError:
    message = summary(
        [
            (violation.field[:MAX_DESCRIPTION_CHARS], violation.message[:MAX_DESCRIPTION_CHARS])
            for violation in violations
        ]
    )
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, code, message, violations)


def unauthenticated() -> ApiError:
    return ApiError(
        grpc.StatusCode.UNAUTHENTICATED,
        "unauthorized",
        "Missing or unknown bearer token in the authorization metadata",
    )
