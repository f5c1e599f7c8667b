"""The Debian tools the bench drives, and the one command that installs them."""

from __future__ import annotations

import os
import shutil
import subprocess

# Tool -> the Debian package that ships it.
REQUIRED = {
    "h2load": "nghttp2-client",
    "wrk": "wrk",
    "nginx": "nginx-light",
    "taskset": "util-linux",
}
# grpc-gateway (the REST ceiling) builds offline from these; without them that figure skips it.
GRPC_GATEWAY_PACKAGES = (
    "golang-go",
    "protobuf-compiler",
    "golang-grpc-gateway",
    "golang-github-grpc-ecosystem-grpc-gateway-dev",
    "golang-google-grpc-dev",
    "golang-goprotobuf-dev",
)
INSTALL_COMMAND = "apt-get install -y " + " ".join(
    sorted({*REQUIRED.values(), *GRPC_GATEWAY_PACKAGES} - {"util-linux"})
)


class MissingTools(Exception):
    """A tool the bench needs is not installed; the message says how to install it."""


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED if shutil.which(tool) is None]


def ensure_tools(install: bool) -> None:
    """Installs missing tools with apt-get when allowed and root; otherwise says how to."""
    missing = missing_tools()
    if not missing:
        return
    if install and os.geteuid() == 0:
        print(f"bench: installing {', '.join(missing)} with apt-get", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            INSTALL_COMMAND.split(),
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        missing = missing_tools()
    if missing:
        raise MissingTools(
            f"bench needs {', '.join(missing)}; install them with:\n  sudo {INSTALL_COMMAND}"
        )


def grpc_gateway_buildable() -> str | None:
    """None when grpc-gateway can be built here, else why not."""
    tools = ("go", "protoc", "protoc-gen-go", "protoc-gen-grpc-gateway")
    absent = [tool for tool in tools if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not installed (sudo {INSTALL_COMMAND})"
    return None
