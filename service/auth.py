"""Bearer tokens and the tenants they belong to."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from service.errors import unauthenticated

# `Bearer` (any case), one space, then visible ASCII only: a value with anything else
# is refused as it is, never trimmed into a token (a `\xa0` or a second space once was).
_BEARER = re.compile(r"bearer ([\x21-\x7e]+)", re.IGNORECASE)
# grpc logs a metadata value that is not UTF-8 with its bytes: an Authorization header.
_GRPC_LOGGER = "grpc._cython.cygrpc"


def _digest(token: str) -> bytes:
    # Looking up digests, not tokens, keeps lookup time independent of how
    # much of a guessed token is right.
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Caller:
    tenant: str
    # The raw header, forwarded upstream by the engine; never logged.
    authorization: str = field(repr=False)


class _UndecodableMetadataFilter(logging.Filter):
    """grpc's "Invalid encoding on <bytes>": the event stays, the bytes go."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Invalid encoding"):
            record.msg = "Invalid encoding of a metadata value (value not logged)"
            record.args = ()
            # The traceback's exception quotes the bytes too.
            record.exc_info = None
            record.exc_text = None
        return True


_METADATA_FILTER = _UndecodableMetadataFilter()


# Callers of headers that authenticated, kept: a header is checked once, not on every
# call. Bounded, so that no stream of valid headers (a token has 64 spellings of
# `Bearer`) grows it without end; past the bound a header is checked every time.
MAX_KNOWN_HEADERS = 1024


class Tenants:
    def __init__(self, tenants_by_token: Mapping[str, str]) -> None:
        self._by_digest = {_digest(token): tenant for token, tenant in tenants_by_token.items()}
        # Keyed by the whole header: a dict compares a key's text only after its
        # (randomly keyed) hash matched in full, so a header that is not a valid one
        # never meets a comparison that could tell how much of it is right.
        self._known: dict[str, Caller] = {}
        # Whoever holds the tokens keeps grpc from logging them; adding it twice is a no-op.
        logging.getLogger(_GRPC_LOGGER).addFilter(_METADATA_FILTER)

    def authenticate(self, header: str | None) -> Caller:
        """The caller, from the value of `authorization: Bearer <token>` metadata."""
        header = header or ""
        known = self._known.get(header)
        if known is not None:
            return known
        match = _BEARER.fullmatch(header)
        tenant = self._by_digest.get(_digest(match.group(1))) if match else None
        if tenant is None:
            raise unauthenticated()
        caller = Caller(tenant, header)
        if len(self._known) < MAX_KNOWN_HEADERS:
            self._known[header] = caller
        return caller
