"""One function per subcommand; each returns the process's exit status."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from batchctl import render
from batchctl.client import BatchClient
from batchctl.input import read_operations
from batchctl.outcome import SUCCESS, exit_status
from batchctl.progress import follow
from batchd.v1 import batch_pb2
from batchd.vocabulary import OPERATION_STATUSES


def submit(client: BatchClient, args: argparse.Namespace, console: Console) -> int:
    operations = read_operations(args.file)
    options = batch_pb2.ExecutionOptions(
        sequential=args.sequential,
        stop_on_failure=args.stop_on_failure,
        max_concurrency=args.max_concurrency,
    )
    return _created(client, client.create(operations, options, args.request_id), args, console)


def _created(
    client: BatchClient, batch: batch_pb2.Batch, args: argparse.Namespace, console: Console
) -> int:
    """A new batch: its id (or JSON), then, with --watch, the watch's outcome."""
    if args.json:
        render.json_line(batch)
    else:
        print(batch.id, flush=True)
    return watch_batch(client, batch.id, args.json, console) if args.watch else SUCCESS


def watch(client: BatchClient, args: argparse.Namespace, console: Console) -> int:
    return watch_batch(client, args.id, args.json, console)


def watch_batch(client: BatchClient, batch_id: str, as_json: bool, console: Console) -> int:
    events = client.watch(batch_id)
    if as_json:
        for event in events:
            render.json_line(event)
    else:
        follow(events, console, lambda: client.get(batch_id).batch_operations)
    # Events name only the operations that finished during the watch; the
    # outcome is judged on all of them.
    batch = client.get(batch_id)
    if not as_json:
        console.print(render.summary(batch), soft_wrap=True)
    return exit_status(batch.batch_operations)


def show(client: BatchClient, args: argparse.Namespace, console: Console) -> int:
    batch = client.get(args.id)
    wanted = {OPERATION_STATUSES[name] for name in args.status or ()}
    shown = [op for op in batch.batch_operations if not wanted or op.status in wanted]
    if args.json:
        filtered = batch_pb2.Batch()
        filtered.CopyFrom(batch)
        del filtered.batch_operations[:]
        filtered.batch_operations.extend(shown)
        render.json_line(filtered)
    else:
        console.print(render.summary(batch), soft_wrap=True)
        console.print(render.operations_table(shown))
    return exit_status(batch.batch_operations)


def cancel(client: BatchClient, args: argparse.Namespace, console: Console) -> int:
    batch = client.cancel(args.id)
    if args.json:
        render.json_line(batch)
    else:
        # What ran and what the cancel stopped (canceled operations count as finished,
        # so finished/total would not say).
        console.print(render.summary(client.get(args.id)), soft_wrap=True)
    return SUCCESS


def retry(client: BatchClient, args: argparse.Namespace, console: Console) -> int:
    batch = client.retry(args.id, args.status or [], args.response_status or [], args.request_id)
    return _created(client, batch, args, console)


def delete(client: BatchClient, args: argparse.Namespace, console: Console) -> int:
    reply = client.delete(args.id)
    if args.json:
        render.json_line(reply)
    else:
        console.print(f"{reply.id}  deleted")
    return SUCCESS


def list_batches(client: BatchClient, args: argparse.Namespace, console: Console) -> int:
    reply = client.list(args.limit)
    if args.json:
        render.json_line(reply)
    else:
        console.print(render.batches_table(reply.batches))
        console.print(f"{len(reply.batches)} of {reply.total_size} batches")
    return SUCCESS


def results(client: BatchClient, args: argparse.Namespace, console: Console) -> int:
    """The batch's operations as JSON lines, to stdout or a file. A file appears only
    whole: written beside it under another name, then renamed."""
    statuses = [OPERATION_STATUSES[name] for name in args.status or ()]
    pages = client.export(args.id, statuses)
    if args.output is None:
        for page in pages:
            sys.stdout.write("".join(map(render.operation_line, page.batch_operations)))
        sys.stdout.flush()
        return SUCCESS
    target = Path(args.output)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as file:
            for page in pages:
                file.write("".join(map(render.operation_line, page.batch_operations)))
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return SUCCESS
