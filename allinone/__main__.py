"""`batchd`: the service and the REST gateway in one process and one event loop.

The gateway calls the service in-process (service/in_process.py: the same stubs,
interceptor and handlers as over gRPC, no socket and no serialisation), unless
BATCH_GRPC_TARGET names a service to call over gRPC instead. The gRPC port serves
other clients (batchctl, grpcurl) either way. In dev mode without BATCH_UPSTREAM_URL,
an echoing demo upstream stands in, so a first batch completes with nothing else running.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
from collections.abc import Sequence

from allinone.demo_upstream import DemoUpstreamSettings, start_demo_upstream
from batchd import config, process, tracing
from gateway.app import start_gateway
from gateway.settings import GatewaySettings
from service.__main__ import upstream_of
from service.app import Service
from service.settings import ServiceSettings

log = logging.getLogger("batchd")


def main(argv: Sequence[str] | None = None) -> None:
    args = config.parse(
        [ServiceSettings, GatewaySettings, DemoUpstreamSettings], argv, prog="batchd"
    )
    process.run(functools.partial(start, args))


async def start(args: argparse.Namespace) -> process.Stop:
    service_settings = config.load(ServiceSettings, args)
    # An empty variable counts as unset, like everywhere in batchd.config.
    remote_target = os.environ.get("BATCH_GRPC_TARGET") or None
    environ = {**os.environ, "BATCH_GRPC_TARGET": remote_target or service_settings.grpc_address}
    gateway_settings = config.load(GatewaySettings, args, environ)
    started: list[process.Stop] = []
    try:
        if service_settings.dev_mode and not service_settings.upstream_url:
            demo = config.load(DemoUpstreamSettings, args)
            started.append((await start_demo_upstream(demo)).cleanup)
            service_settings = service_settings.replace(upstream_url=demo.url)
            log.warning("dev mode: operations go to the echoing demo upstream at %s", demo.url)
        service = await Service.start(service_settings, upstream_of(service_settings))
        started.append(service.stop)
        # With the client interceptors the gateway's own gRPC channel would get (tracing's).
        channel = (
            None
            if remote_target
            else service.services.in_process_channel(tracing.grpc_client_interceptors())
        )
        started.append((await start_gateway(gateway_settings, channel)).cleanup)
    except BaseException:
        await stop_all(started)
        raise
    log.info(
        "batchd: REST on http://%s calling %s, gRPC on %s",
        gateway_settings.http_address,
        remote_target or "the service in-process",
        service_settings.grpc_address,
    )
    return functools.partial(stop_all, started)


async def stop_all(started: list[process.Stop]) -> None:
    """Stops in reverse order: the gateway first, so no request meets a stopped service."""
    for stop in reversed(started):
        await stop()


if __name__ == "__main__":
    main()
