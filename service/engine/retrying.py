"""Database steps of the engine's loops, retried while the database is away.

Only the database's own failures (and the network's, on the way to it) are
worth waiting out: results must never be dropped, and the loops must outlive
an outage. Any other error is a bug; it propagates, and the engine stops the
process loudly instead of retrying it forever.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.waiting import Backoff

log = logging.getLogger(__name__)
RETRY_CAP_SECONDS = 5.0
# OSError covers the connection errors that reach us unwrapped.
RETRIED_ERRORS = (DBAPIError, PoolTimeout, OSError)


async def until_done(what: str, action: Callable[[], Awaitable[int | None]]) -> int:
    """Runs a database step until it succeeds; its count, or 0."""
    backoff = Backoff(0.1, RETRY_CAP_SECONDS)
    while True:
        try:
            return await action() or 0
        except RETRIED_ERRORS as error:
            what_failed = type(error).__name__
            log.warning("%s failed (%s); retrying in %.1fs", what, what_failed, backoff.delay)
        await backoff.wait()
