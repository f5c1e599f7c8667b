"""How an error's message sums up its field problems, the same over gRPC and REST."""

from __future__ import annotations

from collections.abc import Sequence

SHOWN = 5


def summary(problems: Sequence[tuple[str, str]]) -> str:
    """`field: message; ...` for the first few (field, message) pairs, then how many more."""
    shown = "; ".join(f"{field}: {message}" for field, message in problems[:SHOWN])
    return shown + (f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else "")
