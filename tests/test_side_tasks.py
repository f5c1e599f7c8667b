"""The engine's side tasks: database failures are waited out, anything else stops it loudly."""

from __future__ import annotations

import asyncio
import logging

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.exc import OperationalError

from service.credentials import Sealer
from service.database import open_database
from service.engine.engine import Engine
from service.engine.retrying import until_done
from service.engine.urls import Upstream
from service.migrate import upgrade
from service.settings import ServiceSettings
from service.signals import Signals


class Doomed(Exception):
    """What a bug in a side task raises."""


async def test_a_side_task_that_dies_of_a_bug_stops_the_engine_loudly(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database = open_database(database_url)
    await upgrade(database)

    async def doomed() -> None:
        await asyncio.sleep(0.05)
        raise Doomed("a bug")

    settings = ServiceSettings(database_url=database_url, api_tokens="t:t")
    engine = Engine(
        database,
        settings,
        Sealer(Fernet.generate_key()),
        Upstream.parse("http://127.0.0.1:9"),
        Signals(database_url),
        extra_side_tasks={"doomed": doomed},
    )
    stopping = asyncio.Event()
    try:
        await engine.start(on_death=stopping.set)
        await asyncio.wait_for(stopping.wait(), 10)
        assert isinstance(engine.died.result(), Doomed)
        [record] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
        assert "doomed died" in record.getMessage() and record.exc_info is not None
    finally:
        await engine.stop(grace=1)
        await database.dispose()


async def test_database_errors_are_retried_until_the_step_succeeds() -> None:
    failures = [OperationalError("SELECT 1", {}, OSError("connection refused"))] * 2

    async def flaky() -> int:
        if failures:
            raise failures.pop()
        return 3

    assert await asyncio.wait_for(until_done("flaky", flaky), 10) == 3
    assert failures == []


async def test_any_other_error_is_not_retried() -> None:
    calls = 0

    async def buggy() -> int:
        nonlocal calls
        calls += 1
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await until_done("buggy", buggy)
    assert calls == 1
