"""Bearer tokens: a header is checked once and then known, and knowing valid headers
never lets any other header through."""

from __future__ import annotations

import pytest

from service.auth import MAX_KNOWN_HEADERS, Tenants
from service.errors import ApiError


def test_a_known_header_authenticates_as_it_did_and_no_other_header_with_it() -> None:
    tenants = Tenants({"token-a": "tenant-a", "token-b": "tenant-b"})
    for _ in range(2):
        assert tenants.authenticate("Bearer token-a").tenant == "tenant-a"
        assert tenants.authenticate("bEARER token-a").tenant == "tenant-a"
        assert tenants.authenticate("Bearer token-b").authorization == "Bearer token-b"
        for refused in (None, "", "Bearer token-", "Bearer token-a ", "Bearer  token-a", "token-a"):
            with pytest.raises(ApiError) as raised:
                tenants.authenticate(refused)
            assert raised.value.status.name == "UNAUTHENTICATED"


def test_past_the_bound_valid_headers_still_authenticate() -> None:
    tokens = {f"token-{i}": f"tenant-{i}" for i in range(MAX_KNOWN_HEADERS + 10)}
    tenants = Tenants(tokens)
    for _ in range(2):
        for token, tenant in tokens.items():
            assert tenants.authenticate(f"Bearer {token}").tenant == tenant
