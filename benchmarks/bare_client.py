"""The execution ceiling: a bare aiohttp client making the batch's requests itself.

`python -m benchmarks.bare_client BASE_URL COUNT CONCURRENCY` GETs the same
paths as the benchmarked batch, at most CONCURRENCY at once, reads and parses
each JSON body, and prints the seconds it took.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp


async def fetch_all(base_url: str, count: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(base_url, connector=connector) as session:
        slots = asyncio.Semaphore(concurrency)

        async def fetch(index: int) -> None:
            async with slots, session.get(f"/v1/products/{index}") as response:
                await response.json()
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(fetch(index) for index in range(count)))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_client")
    parser.add_argument("base_url")
    parser.add_argument("count", type=int)
    parser.add_argument("concurrency", type=int)
    args = parser.parse_args()
    print(asyncio.run(fetch_all(args.base_url, args.count, args.concurrency)))


if __name__ == "__main__":
    main()
