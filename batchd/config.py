"""Settings read from `BATCH_*` environment variables, each overridable by a flag.

A settings class is a frozen dataclass whose fields name their variable in
``metadata["env"]``; the flag is derived from it (`BATCH_GRPC_ADDRESS` becomes
`--grpc-address`), so the two spellings can never drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line for the operator."""


def env(name: str, help: str) -> dict[str, str]:
    """Field metadata binding a setting to its environment variable."""
    return {"env": name, "help": help}


def host_port(address: str, name: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) split for binding a listening socket."""
    host, separator, port = address.rpartition(":")
    # isdigit alone takes "²", which int() refuses, and "٣", which it reads as 3.
    ascii_number = port.isascii() and port.isdigit()
    if not separator or not host or not ascii_number or not 0 < int(port) < 65536:
        raise ConfigError(f"{name}={address!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def flag_name(env_name: str) -> str:
    return "--" + env_name.removeprefix("BATCH_").lower().replace("_", "-")


def add_arguments(
    parser: argparse.ArgumentParser, settings_type: type[Any], added: set[str]
) -> None:
    for field in dataclasses.fields(settings_type):
        name = field.metadata["env"]
        if name in added:
            continue
        added.add(name)
        if field.type in ("bool", bool):
            parser.add_argument(
                flag_name(name),
                dest=name,
                action="store_const",
                const="1",
                help=field.metadata["help"],
            )
        else:
            parser.add_argument(
                flag_name(name), dest=name, metavar=name, help=field.metadata["help"]
            )


def load(
    settings_type: type[T],
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
) -> T:
    """Builds settings from flags first, then the environment, then defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in dataclasses.fields(settings_type):  # type: ignore[arg-type]
        name = field.metadata["env"]
        raw = getattr(args, name, None) if args is not None else None
        if raw is None:
            raw = environ.get(name)
        if raw is None or raw == "":
            continue
        values[field.name] = _convert(name, raw, field.type)
    try:
        return settings_type(**values)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _convert(name: str, raw: str, kind: object) -> object:
    try:
        if kind in ("bool", bool):
            return _boolean(raw)
        if kind in ("int", int):
            return int(raw)
        if kind in ("float", float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind}") from None
    return raw


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def parse(
    settings_types: Sequence[type[Any]], argv: Sequence[str] | None, prog: str
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description="Settings come from BATCH_* variables or these flags."
    )
    added: set[str] = set()
    for settings_type in settings_types:
        add_arguments(parser, settings_type, added)
    return parser.parse_args(argv)
