"""grpc-gateway (Go) in front of batchd's gRPC server: the REST figure's ceiling.

Built offline from Debian's Go packages in GOPATH mode. Debian's protoc-gen-go
(golang/protobuf 1.3) predates proto3 `optional`, so it compiles a copy of the
proto with that keyword dropped: the wire format is the same, only field
presence differs, which a throughput ceiling does not care about.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from benchmarks.processes import ROOT

HERE = Path(__file__).resolve().parent
PROTO = ROOT / "protos" / "batchd" / "v1" / "batch.proto"
DEBIAN_GOPATH = "/usr/share/gocode"
# Debian's golang/protobuf 1.3 knows the well-known types under their old import paths.
WELL_KNOWN = ",".join(
    f"Mgoogle/protobuf/{name}.proto=github.com/golang/protobuf/ptypes/{package}"
    for name, package in (("struct", "struct"), ("timestamp", "timestamp"))
)


def build(work: Path) -> Path:
    """The gateway binary, rebuilt when the proto or main.go changes."""
    sources = PROTO.read_bytes() + (HERE / "main.go").read_bytes()
    gopath = work / "gopath"
    binary = work / f"batchd-grpc-gateway-{hashlib.sha256(sources).hexdigest()[:12]}"
    if binary.exists():
        return binary
    shutil.rmtree(gopath, ignore_errors=True)
    proto_dir = gopath / "proto" / "batchd" / "v1"
    proto_dir.mkdir(parents=True)
    (proto_dir / "batch.proto").write_text(
        re.sub(r"^(\s*)optional ", r"\1", PROTO.read_text(), flags=re.MULTILINE)
    )
    source = gopath / "src"
    (source / "batchdgw").mkdir(parents=True)
    shutil.copyfile(HERE / "main.go", source / "batchdgw" / "main.go")
    _run(
        [
            "protoc",
            f"-I{gopath / 'proto'}",
            f"-I{ROOT / 'third_party' / 'googleapis'}",
            "-I/usr/include",
            f"--go_out=plugins=grpc,{WELL_KNOWN}:{source}",
            f"--grpc-gateway_out=logtostderr=true,{WELL_KNOWN}:{source}",
            str(proto_dir / "batch.proto"),
        ],
        env={},
    )
    _run(
        ["go", "build", "-o", str(binary.resolve()), "."],
        env={
            "GO111MODULE": "off",
            "GOPATH": f"{gopath.resolve()}:{DEBIAN_GOPATH}",
            "GOCACHE": str((work / "gocache").resolve()),
            "GOFLAGS": "",
        },
        cwd=source / "batchdgw",
    )
    return binary


def _run(command: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
    done = subprocess.run(
        command, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"building grpc-gateway: {command[0]} failed:\n{done.stderr[-2000:]}")
