"""The console under a real browser: Debian's Chromium driven by Playwright, against the
all-in-one `batchd` process and a real upstream on loopback.

`python -m tests.console_browser docs/console.png` takes the README's screenshot.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Dialog, Page, Request, async_playwright

from tests.processes import Process, batchd_env, start_batchd
from tests.rest import call, create_batch
from tests.shared_stack import SHARED_API_TOKENS, fresh_token
from tests.upstream import UpstreamLog, running_upstream

# Debian's package (the Makefile installs it): Playwright downloads no browser of its own.
CHROMIUM = Path("/usr/bin/chromium")
# How Chromium words a refusal by the Content-Security-Policy in the page's console.
REFUSALS = ("Content Security Policy", "requires 'Trusted")


def require_chromium() -> None:
    """Skips without the browser, saying why; under CI=true fails instead."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser is required)")
    pytest.skip(reason)


@dataclass
class ConsoleStack:
    base_url: str
    upstream: UpstreamLog
    browser: Browser


@asynccontextmanager
async def console_stack(directory: Path) -> AsyncIterator[ConsoleStack]:
    """batchd (service + gateway) with a fresh tenant per token of the shared stack's set."""
    async with running_upstream() as (upstream_url, upstream_log), async_playwright() as driver:
        env = batchd_env(
            directory, BATCH_UPSTREAM_URL=upstream_url, BATCH_API_TOKENS=SHARED_API_TOKENS
        )
        process, base_url = await start_batchd(env, directory)
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield ConsoleStack(base_url, upstream_log, browser)
        finally:
            await browser.close()
            await _stop(process)


async def _stop(process: Process) -> None:
    code = await process.stop()
    assert code == 0, process.log()


@dataclass
class Visit:
    """A browser tab on the console, with what it did: every request, dialog and
    console message, to check what must never happen (a token in a URL, a dialog)."""

    page: Page
    token: str
    requests: list[Request] = field(default_factory=list)
    dialogs: list[Dialog] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def urls(self) -> list[str]:
        return [request.url for request in self.requests]

    def csp_violations(self) -> list[str]:
        """What the browser refused by the page's policy: its CSP or its Trusted Types."""
        return [text for text in self.messages if any(mark in text for mark in REFUSALS)]


@asynccontextmanager
async def visit(stack: ConsoleStack, base_url: str | None = None) -> AsyncIterator[Visit]:
    """A new browser context (its own session storage) with a fresh tenant's token,
    on the gateway or on `base_url` (a proxy in front of it)."""
    context: BrowserContext = await stack.browser.new_context(
        base_url=base_url or stack.base_url, viewport={"width": 1200, "height": 760}
    )
    page = await context.new_page()
    seen = Visit(page, fresh_token())
    # Playwright marks each handler it is given: a bound builtin such as list.append won't do.
    page.on("request", lambda request: seen.requests.append(request))
    page.on("console", lambda message: seen.messages.append(message.text))

    async def dismiss(dialog: Dialog) -> None:
        seen.dialogs.append(dialog)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    try:
        yield seen
    finally:
        await context.close()


async def sign_in(seen: Visit, token: str | None = None) -> None:
    page = seen.page
    await page.goto("/console")
    await page.fill("#token", token or seen.token)
    await page.click("button[type=submit]")


@asynccontextmanager
async def rest_client(stack: ConsoleStack, token: str) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base_url=stack.base_url, headers=headers) as http:
        yield http


def slow_operations(count: int, seconds: float) -> list[dict[str, Any]]:
    return [{"http_method": "GET", "path": f"/slow/{seconds}/{n}"} for n in range(count)]


async def sequential_batch(
    http: aiohttp.ClientSession, operations: list[dict[str, Any]]
) -> dict[str, Any]:
    """One operation at a time, so progress is visible step by step."""
    document = {
        "batch": {"batch_operations": operations, "execution_options": {"sequential": True}}
    }
    batch: dict[str, Any] = await call(http, "POST", "/v1/batches", 200, json=document)
    return batch


async def screenshot(path: Path) -> None:
    """The batch page of a running batch, next to finished and failed operations."""
    with tempfile.TemporaryDirectory() as directory:
        async with console_stack(Path(directory)) as stack, visit(stack) as seen:
            async with rest_client(stack, seen.token) as http:
                await create_batch(http, [{"http_method": "GET", "path": "/echo/done"}])
                operations: list[dict[str, Any]] = [
                    {"http_method": "GET", "path": "/echo/v1/products"},
                    {"http_method": "POST", "path": "/echo/v1/orders", "body": {"order": 7}},
                    {"http_method": "GET", "path": "/status/500"},
                    *slow_operations(6, 1.0),
                ]
                running = await sequential_batch(http, operations)
            await sign_in(seen)
            await seen.page.click(f"a[href='#/batches/{running['id']}']")
            # The table catches up with the bar within a second of each operation.
            await seen.page.wait_for_function(
                "() => document.querySelectorAll('.operations .status.completed').length >= 4"
            )
            await seen.page.screenshot(path=str(path), full_page=True)


if __name__ == "__main__":
    asyncio.run(screenshot(Path(sys.argv[1])))
