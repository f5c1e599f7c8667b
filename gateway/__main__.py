"""`python -m gateway`: the REST gateway alone, calling a BatchService over gRPC."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from batchd import config, process
from gateway.app import start_gateway
from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    args = config.parse([GatewaySettings], argv, prog="python -m gateway")

    async def start() -> process.Stop:
        settings = config.load(GatewaySettings, args)
        runner = await start_gateway(settings)
        log.info(
            "REST gateway on http://%s, calling %s", settings.http_address, settings.grpc_target
        )
        return runner.cleanup

    process.run(start, "batchd-gateway")


if __name__ == "__main__":
    main()
