"""The real grpcurl binary, which `make install` puts beside the virtualenv's python."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

GRPCURL = Path(sys.executable).parent / "grpcurl"


async def grpcurl(*args: str) -> tuple[int, str, str]:
    """Runs grpcurl in plaintext; its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        "-plaintext",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()
