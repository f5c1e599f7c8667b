"""batchctl: submit, watch, show, cancel and list batches from a terminal."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import grpc
from rich.console import Console

from batchctl import commands
from batchctl.client import BatchClient, describe_rpc_error
from batchctl.input import InputError
from batchctl.outcome import RPC_ERROR, USAGE
from batchd.vocabulary import OPERATION_STATUSES

DEFAULT_TARGET = "127.0.0.1:50051"
INTERRUPTED = 130
Command = Callable[[BatchClient, argparse.Namespace, Console], int]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    target = getattr(args, "target", None) or os.environ.get("BATCH_GRPC_TARGET", DEFAULT_TARGET)
    token = getattr(args, "token", None) or os.environ.get("BATCH_TOKEN")
    args.json = getattr(args, "json", False)
    command: Command = args.command
    try:
        with BatchClient(target, token) as client:
            return command(client, args, Console())
    except InputError as error:
        return _fail(str(error), USAGE)
    except grpc.RpcError as error:
        return _fail(describe_rpc_error(error), RPC_ERROR)
    except KeyboardInterrupt:
        return INTERRUPTED


def _fail(message: str, status: int) -> int:
    print(f"batchctl: {message}", file=sys.stderr)
    return status


def build_parser() -> argparse.ArgumentParser:
    # The global options are accepted before and after the subcommand; SUPPRESS
    # keeps a subcommand's unset copy from hiding a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target",
        default=argparse.SUPPRESS,
        help=f"host:port of the gRPC service (env BATCH_GRPC_TARGET, default {DEFAULT_TARGET})",
    )
    common.add_argument("--token", default=argparse.SUPPRESS, help="bearer token (env BATCH_TOKEN)")
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine output: JSON lines"
    )
    parser = argparse.ArgumentParser(prog="batchctl", description=__doc__, parents=[common])
    subcommands = parser.add_subparsers(required=True, metavar="COMMAND")

    def add(name: str, command: Command, help: str) -> argparse.ArgumentParser:
        sub = subcommands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(command=command)
        return sub

    submit = add("submit", commands.submit, "submit a batch from a JSON or JSONL file")
    submit.add_argument("file", metavar="FILE", help="JSON or JSONL file, or - for stdin")
    submit.add_argument("--sequential", action="store_true", help="run one at a time, in order")
    submit.add_argument(
        "--stop-on-failure", action="store_true", help="cancel the rest after a failure"
    )
    submit.add_argument(
        "--max-concurrency", type=_positive_int, default=0, metavar="N", help="at most N at once"
    )
    submit.add_argument("--request-id", default="", metavar="ID", help="makes a retry safe")
    submit.add_argument("--watch", action="store_true", help="watch the batch until it ends")

    watch = add("watch", commands.watch, "follow a batch until it ends")
    watch.add_argument("id", metavar="ID")

    show = add("show", commands.show, "show a batch and its operations")
    show.add_argument("id", metavar="ID")
    _status_filter(show, "only operations in these statuses")

    cancel = add("cancel", commands.cancel, "cancel a batch's pending operations")
    cancel.add_argument("id", metavar="ID")

    retry = add(
        "retry", commands.retry, "retry a finished batch's failed operations as a new batch"
    )
    retry.add_argument("id", metavar="ID")
    _status_filter(retry, "operations in these statuses (default: failed timed_out canceled)")
    retry.add_argument(
        "--response-status",
        nargs="+",
        action="extend",
        metavar="CODE",
        help="operations whose response status is one of these: 503, 5xx, 429...",
    )
    retry.add_argument("--request-id", default="", metavar="ID", help="makes a repeat safe")
    retry.add_argument("--watch", action="store_true", help="watch the new batch until it ends")

    results = add(
        "results", commands.results, "write a batch's operations as JSON lines, in submitted order"
    )
    results.add_argument("id", metavar="ID")
    results.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (whole or not at all), not stdout"
    )
    _status_filter(results, "only operations in these statuses")

    delete = add("delete", commands.delete, "delete a finished batch and its operations")
    delete.add_argument("id", metavar="ID")

    listing = add("list", commands.list_batches, "list recent batches")
    listing.add_argument("--limit", type=_positive_int, default=20, help="1 to 100 (default 20)")
    return parser


def _status_filter(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument(
        "--status", nargs="+", action="extend", choices=OPERATION_STATUSES, help=help
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


if __name__ == "__main__":
    sys.exit(main())
