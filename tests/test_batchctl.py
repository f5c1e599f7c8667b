"""The real `batchctl` console script, run as a process against the real service."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchctl.client import smaller_page
from batchd.messages import MAX_PAGE_SIZE
from tests.processes import TOKEN, Process
from tests.upstream import UpstreamLog, huge_operations

BATCHCTL = Path(sys.executable).with_name("batchctl")
UNKNOWN_ID = "4c1ec4d4-4b0f-4f4e-9a8e-000000000000"
Service = tuple[Process, dict[str, str]]


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines()]


def client_env(service: Service, token: str = TOKEN) -> dict[str, str]:
    # A wide terminal keeps table cells on one line for the assertions.
    return {
        **os.environ,
        "BATCH_GRPC_TARGET": service[1]["BATCH_GRPC_ADDRESS"],
        "BATCH_TOKEN": token,
        "COLUMNS": "200",
    }


async def batchctl(
    service: Service, *args: str, stdin: str | None = None, token: str = TOKEN
) -> Result:
    # Asynchronous, so the upstream served by this event loop keeps answering.
    process = await asyncio.create_subprocess_exec(
        BATCHCTL,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=client_env(service, token),
    )
    stdin_bytes = stdin.encode() if stdin is not None else None
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin_bytes), 60)
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


def one_line_error(result: Result) -> str:
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("batchctl: "), result.stderr
    return lines[0]


def operation_events(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line["batch_operation"] for line in lines if "batch_operation" in line]


async def test_submit_a_contract_json_file_and_watch_until_every_operation_is_2xx(
    service: Service, upstream_server: tuple[str, UpstreamLog], tmp_path: Path
) -> None:
    batch_file = tmp_path / "batch.json"
    batch_file.write_text(
        json.dumps(
            {
                "batch": {
                    "batch_operations": [
                        {"http_method": "GET", "path": "/echo/products", "query_params": {"q": 1}},
                        {
                            "http_method": "POST",
                            "path": "/echo/products",
                            "body": {"product": {"name": "Test", "price": 10}},
                        },
                        {"http_method": "delete", "path": "/echo/products/1", "body": None},
                    ]
                }
            }
        )
    )
    result = await batchctl(service, "submit", str(batch_file), "--watch", "--json")
    assert result.code == 0, result.stderr
    [created, *events] = result.json_lines()
    assert created["batch_operations_count"] == 3
    assert [event["batch"]["id"] for event in events] == [created["id"]] * len(events)
    assert events[-1]["batch"]["status"] == "BATCH_STATUS_COMPLETED"
    assert events[-1]["batch"]["finished_batch_operations_count"] == 3
    for operation in operation_events(events):
        assert operation["status"] == "BATCH_OPERATION_STATUS_COMPLETED"
        assert operation["response_status"] == 200
    seen = sorted((r.method, r.path, r.query_string, r.body) for r in upstream_server[1].requests)
    assert seen == [
        ("DELETE", "/echo/products/1", "", None),
        ("GET", "/echo/products", "q=1", None),
        ("POST", "/echo/products", "", {"product": {"name": "Test", "price": 10}}),
    ]


async def test_jsonl_from_stdin_with_a_500_upstream_exits_1(service: Service) -> None:
    lines = [
        {"http_method": "GET", "path": "/echo/a"},
        {"http_method": "POST", "path": "/status/500", "body": {"n": 1}},
    ]
    jsonl = "\n".join(json.dumps(line) for line in lines) + "\n"
    result = await batchctl(service, "submit", "-", "--watch", "--json", stdin=jsonl)
    assert result.code == 1, result.stderr
    [created, *events] = result.json_lines()
    assert events[-1]["batch"]["status"] == "BATCH_STATUS_COMPLETED"

    shown = await batchctl(service, "show", created["id"], "--json")
    assert shown.code == 1
    [batch] = shown.json_lines()
    assert [(op["path"], op["response_status"]) for op in batch["batch_operations"]] == [
        ("/echo/a", 200),
        ("/status/500", 500),
    ]


async def test_show_filters_operations_by_status(service: Service, tmp_path: Path) -> None:
    batch_file = tmp_path / "ops.json"
    batch_file.write_text(
        json.dumps(
            [
                {"http_method": "GET", "path": "/echo/first"},
                {"http_method": "GET", "path": "/status/404"},
                {"http_method": "GET", "path": "/echo/never-sent"},
            ]
        )
    )
    submitted = await batchctl(
        service, "submit", str(batch_file), "--sequential", "--stop-on-failure", "--watch"
    )
    assert submitted.code == 1, submitted.stderr
    batch_id = submitted.stdout.splitlines()[0]
    # The words `show --status` takes: a 404 is `completed` (with a 4xx), not `failed`.
    assert "3 operations, 2 ran (1 succeeded, 1 completed with 4xx), 1 canceled" in (
        submitted.stdout
    )
    assert "failed" not in submitted.stdout

    canceled = await batchctl(service, "show", batch_id, "--status", "canceled", "--json")
    assert canceled.code == 1
    [batch] = canceled.json_lines()
    assert [op["path"] for op in batch["batch_operations"]] == ["/echo/never-sent"]
    assert batch["batch_operations_count"] == 3

    table = await batchctl(service, "show", batch_id, "--status", "completed", "failed")
    assert table.code == 1
    assert "/echo/first" in table.stdout and "/status/404" in table.stdout
    assert "/echo/never-sent" not in table.stdout
    # Each row names its operation, for `grpcurl`, the REST API or a retry to use.
    shown = await batchctl(service, "show", batch_id, "--json")
    for operation in shown.json_lines()[0]["batch_operations"]:
        rows = [line for line in table.stdout.splitlines() if operation["path"] in line]
        listed = operation["status"] != "BATCH_OPERATION_STATUS_CANCELED"
        assert [operation["id"] in row for row in rows] == ([True] if listed else [])


async def test_show_gives_every_operation_of_a_batch_too_large_for_one_reply(
    service: Service, tmp_path: Path
) -> None:
    # Twenty stored responses of about 0.9 MiB: more than one full view carries,
    # and more than one page of operations may.
    count = 20
    batch_file = tmp_path / "huge.json"
    batch_file.write_text(json.dumps(huge_operations(count)))
    submitted = await batchctl(service, "submit", str(batch_file), "--watch", "--json")
    assert submitted.code == 0, submitted.stderr
    batch_id = submitted.json_lines()[0]["id"]

    shown = await batchctl(service, "show", batch_id, "--json")
    assert shown.code == 0, shown.stderr
    [batch] = shown.json_lines()
    in_order = [op["query_params"]["n"] for op in batch["batch_operations"]]
    assert in_order == list(range(count))
    assert all(len(op["response_body"]["data"]) == 900_000 for op in batch["batch_operations"])


def test_a_smaller_page_starts_right_after_what_was_read() -> None:
    """What `show` reads is always whole pages of the current size; after a page too
    large for one reply, the next size must keep it so, or operations are read twice
    and others never (after 100 read, halving to 12 would restart at 96)."""
    for size in range(2, MAX_PAGE_SIZE + 1):
        for read in range(0, 1000, size):
            smaller = smaller_page(read, size)
            assert 0 < smaller <= size // 2 and read % smaller == 0, (read, size)
    assert smaller_page(100, 25) == 4


async def test_cancel_then_watch_reports_the_canceled_batch(
    service: Service, tmp_path: Path
) -> None:
    batch_file = tmp_path / "slow.jsonl"
    batch_file.write_text(
        "".join(
            json.dumps({"http_method": "GET", "path": f"/slow/0.2/{i}"}) + "\n" for i in range(30)
        )
    )
    submitted = await batchctl(service, "submit", str(batch_file), "--max-concurrency", "1")
    assert submitted.code == 0, submitted.stderr
    batch_id = submitted.stdout.strip()

    canceled = await batchctl(service, "cancel", batch_id)
    assert canceled.code == 0, canceled.stderr
    # What ran and what the cancel stopped, not "30/30 finished".
    said = re.fullmatch(
        rf"Batch {batch_id} \w+: 30 operations, (\d+) ran(?: \((\d+) succeeded\))?, "
        r"(\d+) canceled(?:, (\d+) in_progress)?\n",
        canceled.stdout,
    )
    assert said is not None, canceled.stdout
    ran, succeeded, stopped, running = (int(n or 0) for n in said.groups())
    assert ran == succeeded and ran + stopped + running == 30 and stopped >= 20

    watched = await batchctl(service, "watch", batch_id)
    assert watched.code == 1
    shown = await batchctl(service, "show", batch_id, "--json")
    statuses = Counter(op["status"] for op in shown.json_lines()[0]["batch_operations"])
    completed = statuses["BATCH_OPERATION_STATUS_COMPLETED"]
    assert statuses["BATCH_OPERATION_STATUS_CANCELED"] == 30 - completed == stopped
    assert (
        f"Batch {batch_id} canceled: 30 operations, {completed} ran ({completed} succeeded), "
        f"{30 - completed} canceled"
    ) in watched.stdout

    again = await batchctl(service, "cancel", batch_id)
    assert again.code == 3
    assert one_line_error(again).startswith("batchctl: FAILED_PRECONDITION: ")


async def test_list_and_request_ids(service: Service) -> None:
    operations = json.dumps([{"http_method": "GET", "path": "/echo/x"}])
    first = await batchctl(service, "submit", "-", "--request-id", "r-1", stdin=operations)
    repeat = await batchctl(service, "submit", "-", "--request-id", "r-1", stdin=operations)
    other = await batchctl(service, "submit", "-", stdin=operations)
    assert first.code == repeat.code == other.code == 0
    assert first.stdout == repeat.stdout != other.stdout

    listed = await batchctl(service, "list", "--limit", "1", "--json")
    assert listed.code == 0
    [reply] = listed.json_lines()
    assert reply["total_size"] == 2
    assert [batch["id"] for batch in reply["batches"]] == [other.stdout.strip()]

    table = await batchctl(service, "list")
    assert first.stdout.strip() in table.stdout and other.stdout.strip() in table.stdout


async def test_bad_input_is_a_one_line_usage_error(service: Service, tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"batch": {"batch_operations": [}\n')
    cases = {
        str(tmp_path / "missing.json"): "No such file or directory",
        str(bad_json): "invalid JSON",
    }
    for path, reason in cases.items():
        result = await batchctl(service, "submit", path)
        assert result.code == 2
        assert reason in one_line_error(result)

    stdin_cases = {
        '{"http_method": "GET", "path": "/a"}\nnot json\n': "invalid JSON on line 2",
        '[{"http_method": "FETCH", "path": "/a"}]': "http_method must be one of",
        '[{"http_method": "GET", "path": "/a", "params": {}}]': "unknown field 'params'",
        "[]": "no operations",
        "[" * 100_000 + "]" * 100_000: "nested too deeply",
        '[{"http_method": "POST", "path": "/a", "body": {"s": "\\ud800"}}]': "body holds",
        '[{"http_method": "POST", "path": "/a", "body": {"n": 1' + "0" * 400 + "}}]": "body holds",
    }
    for text, reason in stdin_cases.items():
        result = await batchctl(service, "submit", "-", stdin=text)
        assert result.code == 2
        assert reason in one_line_error(result)

    usage = await batchctl(service, "show", UNKNOWN_ID, "--status", "done")
    assert usage.code == 2 and "invalid choice" in usage.stderr


async def test_rpc_errors_are_one_line_with_the_code_and_field_violations(
    service: Service,
) -> None:
    for command in ("show", "watch", "cancel"):
        result = await batchctl(service, command, UNKNOWN_ID)
        assert result.code == 3
        assert one_line_error(result) == (
            f"batchctl: NOT_FOUND: Unable to find batch with id='{UNKNOWN_ID}'"
        )

    invalid = await batchctl(
        service, "submit", "-", stdin='[{"http_method": "GET", "path": "nope"}, {"path": "/a"}]'
    )
    assert invalid.code == 3
    line = one_line_error(invalid)
    assert line.startswith("batchctl: INVALID_ARGUMENT: ")
    assert "batch_operations[0].path: " in line and "batch_operations[1].http_method: " in line

    unauthenticated = await batchctl(service, "list", token="not-a-token")
    assert unauthenticated.code == 3
    assert one_line_error(unauthenticated).startswith("batchctl: UNAUTHENTICATED: ")


def read_until_closed(fd: int) -> bytes:
    output = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return output
        if not chunk:
            return output
        output += chunk


async def watch_in_a_terminal(service: Service, batch_id: str) -> str:
    """What `batchctl watch` shows in a terminal until the batch finishes."""
    primary, secondary = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        BATCHCTL,
        "watch",
        batch_id,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        env={**client_env(service), "TERM": "xterm-256color", "NO_COLOR": "1"},
    )
    os.close(secondary)
    try:
        output = await asyncio.wait_for(asyncio.to_thread(read_until_closed, primary), 60)
    finally:
        os.close(primary)
    code = await asyncio.wait_for(process.wait(), 60)
    text = output.decode(errors="replace")
    assert code == 0, text
    return text


async def test_the_live_progress_bar_renders_in_a_terminal(service: Service) -> None:
    operations = json.dumps([{"http_method": "GET", "path": f"/slow/0.2/{i}"} for i in range(4)])
    batch = await batchctl(
        service, "submit", "-", "--json", "--max-concurrency", "1", stdin=operations
    )
    batch_id = batch.json_lines()[0]["id"]
    text = await watch_in_a_terminal(service, batch_id)
    assert "━" in text and "4/4" in text  # the bar and its done/total column
    assert f"Batch {batch_id} completed: 4 operations, 4 ran (4 succeeded)" in text
    assert "4 succeeded" in text.split("Batch ")[0]  # the bar counts in the same words
    assert "Traceback" not in text


async def test_the_progress_line_says_while_an_upstream_pause_holds_the_batch_back(
    service: Service,
) -> None:
    # Refused once with Retry-After: 3, the tenant's sends pause; then it succeeds.
    operations = json.dumps(
        [{"http_method": "GET", "path": "/flaky/ctl/1/429", "query_params": {"retry_after": 3}}]
    )
    batch = await batchctl(service, "submit", "-", "--json", stdin=operations)
    text = await watch_in_a_terminal(service, batch.json_lines()[0]["id"])
    assert "held back until " in text and "(the upstream asked for a pause)" in text, text
    assert "1/1" in text and "1 succeeded" in text


async def test_retry_resends_the_failed_part_and_delete_removes_a_batch(
    service: Service, upstream_server: tuple[str, UpstreamLog]
) -> None:
    operations = json.dumps(
        [
            {"http_method": "GET", "path": "/echo/ok"},
            {"http_method": "POST", "path": "/cutoff"},
            {"http_method": "GET", "path": "/status/404"},
        ]
    )
    submitted = await batchctl(service, "submit", "-", "--watch", "--json", stdin=operations)
    assert submitted.code == 1
    source_id = submitted.json_lines()[0]["id"]

    retried = await batchctl(service, "retry", source_id, "--watch")
    assert retried.code == 1, retried.stderr
    retry_id = retried.stdout.splitlines()[0]
    shown = await batchctl(service, "show", retry_id, "--json")
    [batch] = shown.json_lines()
    assert batch["retry_of"] == source_id
    assert [op["path"] for op in batch["batch_operations"]] == ["/cutoff"]

    by_code = await batchctl(
        service, "retry", source_id, "--response-status", "4xx", "--status", "failed", "--json"
    )
    assert by_code.code == 0, by_code.stderr
    [batch] = by_code.json_lines()
    assert batch["retry_of"] == source_id
    [shown_batch] = (await batchctl(service, "show", batch["id"], "--json")).json_lines()
    assert [op["path"] for op in shown_batch["batch_operations"]] == ["/cutoff", "/status/404"]

    nothing = await batchctl(service, "retry", source_id, "--response-status", "5xx")
    assert nothing.code == 3
    assert one_line_error(nothing).startswith("batchctl: FAILED_PRECONDITION: ")

    deleted = await batchctl(service, "delete", source_id)
    assert deleted.code == 0, deleted.stderr
    assert deleted.stdout.split() == [source_id, "deleted"]
    again = await batchctl(service, "delete", source_id, "--json")
    assert again.code == 3
    assert one_line_error(again).startswith("batchctl: NOT_FOUND: ")
    gone = await batchctl(service, "show", source_id)
    assert gone.code == 3


async def test_results_writes_the_operations_as_json_lines_in_submitted_order(
    service: Service, tmp_path: Path
) -> None:
    operations = [
        {"http_method": "POST", "path": f"/status/{200 + n % 3 * 100}"} for n in range(150)
    ]
    submitted = await batchctl(service, "submit", "-", "--watch", stdin=json.dumps(operations))
    assert submitted.code == 1  # some got 3xx and 4xx responses
    batch_id = submitted.stdout.splitlines()[0]

    printed = await batchctl(service, "results", batch_id)
    assert printed.code == 0, printed.stderr
    lines = printed.json_lines()
    assert [line["path"] for line in lines] == [op["path"] for op in operations]
    assert {line["object"] for line in lines} == {"batch_operation"}
    assert [line["response_status"] for line in lines[:3]] == [200, 300, 400]

    target = tmp_path / "results.jsonl"
    written = await batchctl(
        service, "results", batch_id, "-o", str(target), "--status", "completed"
    )
    assert written.code == 0 and written.stdout == ""
    assert [json.loads(line) for line in target.read_text().splitlines()] == lines
    assert list(tmp_path.glob(".*partial")) == []

    missing = await batchctl(service, "results", UNKNOWN_ID, "-o", str(tmp_path / "none.jsonl"))
    assert missing.code == 3 and "NOT_FOUND" in one_line_error(missing)
    assert not (tmp_path / "none.jsonl").exists()
    other = await batchctl(service, "results", batch_id, token="token-b")
    assert other.code == 3 and "NOT_FOUND" in one_line_error(other)


async def test_list_shows_each_batchs_outcomes(service: Service) -> None:
    operations = [
        {"http_method": "POST", "path": "/status/503"},
        {"http_method": "POST", "path": "/cutoff"},
    ]
    submitted = await batchctl(service, "submit", "-", "--watch", stdin=json.dumps(operations))
    assert submitted.code == 1
    listed = await batchctl(service, "list")
    assert listed.code == 0, listed.stderr
    assert "1 completed with 5xx, 1 failed" in listed.stdout
    assert "Traceback" not in listed.stderr
