"""The web console at /console in a real browser (Debian's Chromium, driven by Playwright)
against the all-in-one batchd process and a real upstream on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Locator, Page, expect

from gateway.console import CONTENT_SECURITY_POLICY
from tests.console_browser import (
    ConsoleStack,
    Visit,
    console_stack,
    require_chromium,
    rest_client,
    sequential_batch,
    sign_in,
    slow_operations,
    visit,
)
from tests.rest import call, create_batch, wait_completed
from tests.shared_stack import fresh_token
from tests.tcp_proxy import tcp_proxy

# A body an upstream could send: markup that runs if the console ever parsed it as HTML.
XSS_SCRIPT = "<script>window.__pwned = 'script'</script>"
XSS_IMAGE = "<img src=x onerror=\"window.__pwned = 'img'; alert('img')\">"


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ConsoleStack]:
    require_chromium()
    async with console_stack(tmp_path_factory.mktemp("console")) as started:
        yield started


@pytest.fixture
async def tab(stack: ConsoleStack) -> AsyncIterator[Visit]:
    async with visit(stack) as seen:
        yield seen
    # Whatever the test did, the browser never refused our own code, nor showed a dialog,
    # and the token never travelled in a URL.
    assert seen.csp_violations() == []
    assert seen.dialogs == []
    assert [url for url in seen.urls() if seen.token in url] == []


@pytest.fixture
async def http(stack: ConsoleStack, tab: Visit) -> AsyncIterator[aiohttp.ClientSession]:
    """A REST client of the tab's tenant."""
    async with rest_client(stack, tab.token) as client:
        yield client


def row_of(page: Page, batch_id: str) -> Locator:
    return page.locator(f"tr[data-batch-id='{batch_id}']")


async def open_batch(page: Page, batch_id: str) -> None:
    await page.click(f"a[href='#/batches/{batch_id}']")
    await expect(page.locator("h2 .id")).to_have_text(batch_id)


async def progress_values(progress: Locator, total: int, timeout: float = 30) -> list[int]:
    """Each value the progress bar showed, read as it ran, until it reached `total`."""
    seen: list[int] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = int(await progress.get_attribute("value") or 0)
        if not seen or seen[-1] != value:
            seen.append(value)
        if value == total:
            return seen
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the progress bar stopped at {seen}")


async def mark_document(page: Page) -> None:
    """A flag that only this document holds: a reload would lose it."""
    await page.evaluate("() => { window.__sameDocument = true }")


async def still_same_document(page: Page) -> bool:
    return bool(await page.evaluate("() => window.__sameDocument === true"))


# --- headers and sign-in ---------------------------------------------------------------


async def test_console_responses_carry_a_strict_csp_and_nosniff(stack: ConsoleStack) -> None:
    async with aiohttp.ClientSession(base_url=stack.base_url) as anonymous:
        for path in ("/console", "/console/assets/console.js", "/console/assets/missing.js"):
            async with anonymous.get(path) as response:
                await response.read()
                assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["X-Frame-Options"] == "DENY"
        async with anonymous.get("/console/assets/console.js") as response:
            assert response.content_type in {"text/javascript", "application/javascript"}
        # The files are those of gateway/console/assets alone: no way out of the folder.
        for escape in ("/console/assets/../../console.py", "/console/assets/%2e%2e/index.html"):
            async with anonymous.get(escape) as response:
                assert response.status in {403, 404}, escape
                assert "CONSOLE_DIR" not in await response.text()
        # The API's answers are unchanged.
        async with anonymous.get("/healthz") as response:
            assert "Content-Security-Policy" not in response.headers
    directives = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


async def test_the_browser_enforces_the_policy_on_injected_markup(tab: Visit) -> None:
    """Were a string ever to reach an HTML sink or an inline handler, the browser refuses it."""
    page = tab.page
    await page.goto("/console")
    outcome = await page.evaluate(
        """() => {
            const results = {};
            try { document.body.innerHTML = "<b>x</b>"; } catch (e) { results.innerHTML = e.name; }
            const button = document.createElement("button");
            try { button.setAttribute("onclick", "window.__inline = true"); }
            catch (e) { results.handler = e.name; }
            document.body.append(button);
            button.click();
            const script = document.createElement("script");
            try { script.text = "window.__inline = true"; } catch (e) { results.script = e.name; }
            document.body.append(script);
            results.ran = window.__inline === true;
            return results;
        }"""
    )
    assert outcome["ran"] is False
    assert outcome["innerHTML"] == "TypeError"
    # The refusals were the policy's, reported as such; the fixture's check must not see them.
    assert len(tab.csp_violations()) >= 2, tab.messages
    tab.messages.clear()


async def test_a_refused_token_is_not_kept(tab: Visit) -> None:
    await sign_in(tab, "not-a-token")
    await expect(tab.page.get_by_role("alert")).to_have_text("The gateway refused this token.")
    assert await tab.page.evaluate("() => sessionStorage.length") == 0
    await expect(tab.page.locator("#token")).to_be_visible()


async def test_sign_in_keeps_the_token_in_session_storage_only(
    stack: ConsoleStack, tab: Visit, http: aiohttp.ClientSession
) -> None:
    created = await create_batch(http, [{"http_method": "GET", "path": "/echo/signed-in"}])
    await sign_in(tab)
    page = tab.page
    await expect(row_of(page, created["id"])).to_be_visible()
    assert await page.evaluate("() => sessionStorage.getItem('batchd.token')") == tab.token
    assert await page.evaluate("() => localStorage.length") == 0
    assert await page.evaluate("() => document.cookie") == ""
    assert await page.context.cookies() == []
    api_requests = [r for r in tab.requests if "/v1/" in r.url]
    assert api_requests
    for request in api_requests:
        assert await request.header_value("authorization") == f"Bearer {tab.token}"
    # Signing out forgets it.
    await page.click("#sign-out")
    await expect(page.locator("#token")).to_be_visible()
    assert await page.evaluate("() => sessionStorage.length") == 0


async def test_the_list_holds_the_tenants_batches_only(
    stack: ConsoleStack, tab: Visit, http: aiohttp.ClientSession
) -> None:
    mine = await create_batch(http, [{"http_method": "GET", "path": "/echo/mine"}])
    async with rest_client(stack, fresh_token()) as other:
        theirs = await create_batch(other, [{"http_method": "GET", "path": "/echo/theirs"}])
    await sign_in(tab)
    await expect(row_of(tab.page, mine["id"])).to_be_visible()
    await expect(tab.page.locator("table.batches tbody tr")).to_have_count(1)
    await expect(row_of(tab.page, theirs["id"])).to_have_count(0)


# --- live progress ---------------------------------------------------------------------


async def test_progress_moves_live_in_the_list_and_on_the_batch_page(
    tab: Visit, http: aiohttp.ClientSession
) -> None:
    total = 8
    batch = await sequential_batch(http, slow_operations(total, 0.4))
    await sign_in(tab)
    page = tab.page
    row = row_of(page, batch["id"])
    await expect(row).to_be_visible()
    await mark_document(page)
    in_list = await progress_values(row.locator("progress"), 3)
    # Seen step by step as it ran, not only at the start and the end.
    assert len(in_list) >= 3, in_list
    assert in_list == sorted(in_list)

    await open_batch(page, batch["id"])
    on_page = await progress_values(page.locator(".summary progress"), total)
    assert len(on_page) >= 3, on_page
    assert on_page == sorted(on_page)
    await expect(page.locator("#batch-status")).to_have_text("completed")
    await expect(page.locator(".summary .count")).to_have_text(f"{total} / {total}")
    # The operations' table follows, without a reload.
    await expect(page.locator("table.operations .status.completed")).to_have_count(total)
    assert await still_same_document(page)
    documents = [r for r in tab.requests if r.resource_type == "document"]
    assert len(documents) == 1


async def test_a_cut_event_stream_reconnects_and_progress_goes_on(stack: ConsoleStack) -> None:
    host, port = stack.base_url.removeprefix("http://").rsplit(":", 1)
    async with (
        tcp_proxy(host, int(port)) as proxy,
        visit(stack, f"http://{host}:{proxy.port}") as tab,
    ):
        async with rest_client(stack, tab.token) as http:
            total = 10
            batch = await sequential_batch(http, slow_operations(total, 0.4))
        await sign_in(tab)
        page = tab.page
        await open_batch(page, batch["id"])
        await mark_document(page)
        progress = page.locator(".summary progress")
        await expect(progress).not_to_have_attribute("value", "0")
        proxy.cut()
        await asyncio.sleep(0.3)
        proxy.resume()
        after = await progress_values(progress, total)
        assert after == sorted(after)
        await expect(page.locator("#batch-status")).to_have_text("completed")
        assert await still_same_document(page)
        streams = [url for url in tab.urls() if url.endswith(f"/v1/batches/{batch['id']}/events")]
        assert len(streams) >= 2, streams
        assert [url for url in tab.urls() if tab.token in url] == []


async def test_the_list_follows_more_running_batches_than_it_streams_at_once(
    tab: Visit, http: aiohttp.ClientSession
) -> None:
    """Three streams at a time (a browser's connections to one host are few), for the
    newest batches; the list reads the others meanwhile, and all reach completed live."""
    short = [await sequential_batch(http, slow_operations(3, 0.4)) for _ in range(3)]
    # Newer, so first in the list: these get the streams.
    long = [await sequential_batch(http, slow_operations(12, 0.5)) for _ in range(3)]
    await sign_in(tab)
    page = tab.page
    await expect(page.locator("table.batches tbody tr")).to_have_count(6)
    await mark_document(page)
    first = await page.locator("table.batches .status").all_text_contents()
    assert "completed" not in first, first
    for batch in short:
        await expect(row_of(page, batch["id"]).locator(".count")).to_have_text("3 / 3")
    # Done while every stream was still taken by a running batch.
    running = [await row_of(page, b["id"]).locator(".status").text_content() for b in long]
    assert "completed" not in running, running
    for batch in long:
        await expect(row_of(page, batch["id"]).locator(".status")).to_have_text(
            "completed", timeout=20_000
        )
    assert await still_same_document(page)


# --- the batch page --------------------------------------------------------------------


async def test_operations_show_in_submitted_order_a_page_at_a_time(
    tab: Visit, http: aiohttp.ClientSession
) -> None:
    # Submitted in an order that neither ids nor paths sort into.
    names = [f"op-{(n * 7) % 25:02d}" for n in range(25)]
    batch = await create_batch(http, [{"http_method": "GET", "path": f"/echo/{n}"} for n in names])
    await wait_completed(http, batch["id"], expand=False)
    await sign_in(tab)
    page = tab.page
    await open_batch(page, batch["id"])
    requests = page.locator("table.operations code.request")
    await expect(requests).to_have_count(20)
    assert await requests.all_text_contents() == [f"GET /echo/{n}" for n in names[:20]]
    await expect(page.locator(".pager .page").last).to_have_text("page 1 of 2 · 25 in all")
    await page.locator(".pager .next").last.click()
    await expect(requests).to_have_count(5)
    assert await requests.all_text_contents() == [f"GET /echo/{n}" for n in names[20:]]


async def test_cancel_then_filter_retry_and_delete(
    stack: ConsoleStack, tab: Visit, http: aiohttp.ClientSession
) -> None:
    total = 12
    batch = await sequential_batch(http, slow_operations(total, 0.3))
    await sign_in(tab)
    page = tab.page
    await open_batch(page, batch["id"])
    # While it runs: cancel only.
    await expect(page.locator("#delete")).to_be_disabled()
    await expect(page.locator("#retry")).to_be_disabled()
    await expect(page.locator(".summary .count")).not_to_have_text(f"0 / {total}")
    await page.click("#cancel")
    await expect(page.locator("#batch-status")).to_have_text("canceled")
    await expect(page.locator("#cancel")).to_be_disabled()

    canceled = await call(
        http,
        "GET",
        f"/v1/batch_operations?batch_ids[]={batch['id']}&status[]=canceled&limit=1",
        200,
    )
    count = canceled["pagination"]["count"]
    assert 0 < count < total
    await page.select_option("#status-filter", "canceled")
    statuses = page.locator("table.operations td .status")
    await expect(statuses).to_have_count(count)
    assert set(await statuses.all_text_contents()) == {"canceled"}

    # Retry makes a new batch of the canceled operations, and the console opens it.
    await page.click("#retry")
    await expect(page.get_by_role("status")).to_have_text(f"A retry of batch {batch['id']}.")
    retry_id = (await page.locator("h2 .id").text_content()) or ""
    assert retry_id != batch["id"]
    retried = await call(http, "GET", f"/v1/batches/{retry_id}", 200)
    assert retried["batch_operations_count"] == count
    await page.click("#cancel")
    await expect(page.locator("#batch-status")).to_have_text("canceled")

    # Delete asks in the page, then the batch is gone.
    await page.goto(f"/console#/batches/{batch['id']}")
    await page.click("#delete")
    await page.click("#confirm-delete")
    await expect(page.get_by_role("status")).to_have_text(f"Deleted batch {batch['id']}.")
    await expect(row_of(page, retry_id)).to_be_visible()
    await expect(row_of(page, batch["id"])).to_have_count(0)
    await call(http, "GET", f"/v1/batches/{batch['id']}", 404)


async def test_an_action_the_api_refuses_shows_its_message(
    tab: Visit, http: aiohttp.ClientSession
) -> None:
    batch = await create_batch(http, [{"http_method": "GET", "path": "/echo/fine"}])
    await wait_completed(http, batch["id"], expand=False)
    await sign_in(tab)
    page = tab.page
    await open_batch(page, batch["id"])
    # Nothing failed, so there is nothing to retry: the API's 422, in its words.
    await page.click("#retry")
    alert = page.get_by_role("alert")
    await expect(alert).to_be_visible()
    assert (await alert.text_content() or "").strip()
    await expect(page.locator("h2 .id")).to_have_text(batch["id"])


# --- hostile upstream bodies -----------------------------------------------------------


async def test_markup_in_a_response_body_is_shown_as_text_and_never_runs(
    stack: ConsoleStack, tab: Visit, http: aiohttp.ClientSession
) -> None:
    payload = {"html": f"{XSS_SCRIPT}{XSS_IMAGE}", "plain": XSS_IMAGE}
    batch = await create_batch(
        http, [{"http_method": "POST", "path": "/echo/xss", "body": payload}]
    )
    done = await wait_completed(http, batch["id"])
    assert done["batch_operations"]["data"][0]["response_body"]["body"] == payload
    await sign_in(tab)
    page = tab.page
    await open_batch(page, batch["id"])
    body = page.locator("pre.response-body")
    await expect(body).to_contain_text(XSS_SCRIPT.replace('"', '\\"'))
    await expect(body).to_contain_text(XSS_IMAGE.replace('"', '\\"'))
    await expect(body).to_be_visible()
    # Give an onerror handler time to fire, were there an image to fail.
    await page.wait_for_timeout(300)
    assert await page.evaluate("() => window.__pwned") is None
    assert await page.locator("img").count() == 0
    assert await page.locator("script").count() == 1
    assert tab.dialogs == []


async def test_an_unknown_batch_shows_the_apis_not_found(tab: Visit) -> None:
    await sign_in(tab)
    await expect(tab.page.locator("table.batches")).to_be_visible()
    missing = "4c1ec4d4-4b0f-4f4e-9a8e-000000000000"
    await tab.page.goto(f"/console#/batches/{missing}")
    await expect(tab.page.get_by_role("alert")).to_contain_text(missing)


def test_the_console_ships_no_inline_script_or_style() -> None:
    page = (Path(__file__).parent.parent / "gateway/console/index.html").read_text()
    assert '<script type="module" src="/console/assets/console.js"></script>' in page
    assert page.count("<script") == 1
    assert "<style" not in page and "style=" not in page


# --- the event stream reader -------------------------------------------------------------

# A stream as the gateway sends it, with what a newer gateway may add: `retry:`, comments,
# CRLF line ends, a multi-line `data:` and a final event of a type the console does not know.
STREAM = (
    "retry: 1500\r\n\r\n"
    ": keep-alive\r\n\r\n"
    'id: 1\r\nevent: batch\r\ndata: {"object": "batch", "status": "in_progress"}\r\n\r\n'
    'id: 2\nevent: batch_operation\ndata: {"batch":\ndata:  {"object": "batch"}}\n\n'
    "id: 3\revent: end\rdata: {}\r\r"
)
PARSED = {
    "events": [
        {"type": "batch", "data": '{"object": "batch", "status": "in_progress"}'},
        {"type": "batch_operation", "data": '{"batch":\n {"object": "batch"}}'},
        {"type": "end", "data": "{}"},
    ],
    "lastEventId": "3",
    "retry": 1500,
}


async def test_the_event_reader_parses_a_stream_cut_at_any_point(tab: Visit) -> None:
    await tab.page.goto("/console")
    results = await tab.page.evaluate(
        """async (stream) => {
            const { EventStreamParser } = await import("/console/assets/events.js");
            const results = [];
            for (let cut = 0; cut <= stream.length; cut++) {
                const parser = new EventStreamParser();
                const events = [stream.slice(0, cut), stream.slice(cut)].flatMap(
                    (part) => parser.feed(part)
                );
                results.push({ events, lastEventId: parser.lastEventId, retry: parser.retry });
            }
            const parser = new EventStreamParser();
            const events = [...stream].flatMap((character) => parser.feed(character));
            results.push({ events, lastEventId: parser.lastEventId, retry: parser.retry });
            return results;
        }""",
        STREAM,
    )
    # Cut in two at every point, then fed one character at a time.
    assert len(results) == len(STREAM) + 2
    for cut, result in enumerate(results):
        assert result == PARSED, f"cut at {cut}: {result}"
