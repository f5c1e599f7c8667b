"""What every RPC goes through: request id, error mapping, metrics and one log event."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from sqlalchemy.exc import StatementError

from batchd.logs import REQUEST_ID, REQUEST_ID_METADATA, clean_request_id
from service import metrics
from service.database import statement_refused
from service.errors import ApiError

log = logging.getLogger("batchd.rpc")
DATABASE_UNAVAILABLE = "the database is unavailable; retry later"
INTERNAL_ERROR = "internal error; the request id is in the service log"


def metadata_value(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key and isinstance(value, str):
            return value
    return None


@asynccontextmanager
async def rpc_scope(name: str, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
    """Runs an RPC's body; ApiErrors become rich statuses, and no trace ever leaks."""
    started = time.perf_counter()
    request_id = clean_request_id(metadata_value(context, REQUEST_ID_METADATA)) or uuid.uuid4().hex
    token = REQUEST_ID.set(request_id)
    code = grpc.StatusCode.OK
    try:
        yield
    except grpc.aio.AbortError:
        raise
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
        raise
    except ApiError as error:
        code = error.status
        await context.abort_with_status(error.to_status())  # type: ignore[attr-defined]
    except StatementError as error:
        if statement_refused(error):
            code = grpc.StatusCode.INTERNAL
            log.exception("%s: the database refused a statement", name)
            await context.abort(code, INTERNAL_ERROR)
        else:
            code = grpc.StatusCode.UNAVAILABLE
            log.warning("database unavailable: %s", type(error).__name__)
            await context.abort(code, DATABASE_UNAVAILABLE)
    except Exception:
        code = grpc.StatusCode.INTERNAL
        log.exception("%s failed", name)
        await context.abort(code, INTERNAL_ERROR)
    finally:
        seconds = time.perf_counter() - started
        metrics.rpc_finished(name, code.name, seconds)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "rpc",
                extra={"rpc": name, "code": code.name, "duration_ms": round(seconds * 1000, 3)},
            )
        REQUEST_ID.reset(token)
