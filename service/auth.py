"""Bearer tokens and the tenants they belong to."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from service.errors import unauthenticated


def _digest(token: str) -> bytes:
    # Looking up digests, not tokens, keeps lookup time independent of how
    # much of a guessed token is right.
    return hashlib.sha256(token.encode()).digest()


def metadata_value(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key and isinstance(value, str):
            return value
    return None


@dataclass(frozen=True)
class Caller:
    tenant: str
    # The raw header, forwarded upstream by the engine; never logged.
    authorization: str = field(repr=False)


class Tenants:
    def __init__(self, tenants_by_token: Mapping[str, str]) -> None:
        self._by_digest = {_digest(token): tenant for token, tenant in tenants_by_token.items()}

    def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """The caller, from `authorization: Bearer <token>` metadata."""
        header = metadata_value(context, "authorization") or ""
        scheme, _, token = header.partition(" ")
        tenant = self._by_digest.get(_digest(token.strip())) if scheme.lower() == "bearer" else None
        if tenant is None:
            raise unauthenticated()
        return Caller(tenant, header)
