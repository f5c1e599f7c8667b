"""`python -m service`: the gRPC server and the execution engine, without the gateway."""

from __future__ import annotations

from collections.abc import Sequence

from batchd import config, process
from service import metrics
from service.app import Service
from service.engine.urls import Upstream, UpstreamError
from service.settings import ServiceSettings


def upstream_of(settings: ServiceSettings) -> Upstream:
    if not settings.upstream_url:
        raise config.ConfigError("BATCH_UPSTREAM_URL is not set: it is where operations are sent")
    try:
        return Upstream.parse(settings.upstream_url)
    except UpstreamError as error:
        raise config.ConfigError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> None:
    args = config.parse([ServiceSettings], argv, prog="python -m service")

    async def start() -> process.Stop:
        settings = config.load(ServiceSettings, args)
        service = await Service.start(settings, upstream_of(settings))
        if settings.metrics_address:
            metrics.serve(*settings.metrics_listen())
        return service.stop

    process.run(start, "batchd-service")


if __name__ == "__main__":
    main()
