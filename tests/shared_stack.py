"""The service and gateway a module's tests share (the `shared_stack` fixture), and its tenants."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

# The shared stack serves every test a fresh tenant, so tests can share one
# service and gateway (started once per module) and still count only their own objects.
SHARED_TENANTS = 3000
_tenant_numbers = itertools.count()


def fresh_token() -> str:
    number = next(_tenant_numbers)
    assert number < SHARED_TENANTS, "raise SHARED_TENANTS"
    return f"shared-token-{number}"


# Every fresh token, each its own tenant, for the shared service to accept.
SHARED_API_TOKENS = ",".join(f"shared-token-{n}:shared-{n}" for n in range(SHARED_TENANTS))


@dataclass(frozen=True)
class SharedStack:
    base_url: str
    grpc_target: str
