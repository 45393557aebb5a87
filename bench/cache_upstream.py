"""Cache benchmark: upstream calls per distinct identifier under a burst, and hit latency.

    python3 bench/cache_upstream.py [--burst 200] [--distinct 10] [--hits 2000]

Runs the emulator, a redis-server on a free port and gateways over real HTTP, all on
loopback. Prints, for the memory and the Redis backend: PCS calls per distinct identifier
under a burst (target 1.00), and the median latency of a cache hit in the cluster service,
Redis against memory, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.app import create_app
from gateway.config import Settings
from gateway.emulator.app import create_emulator
from gateway.emulator.seed import demo_clusters
from tests.support.servers import Emulator, RedisServer, ServerThread

QUERY = "query($i: String!) { cluster(identifier: $i) { name } }"


async def _burst(url: str, identifiers: list[str]) -> None:
    limits = httpx.Limits(max_connections=len(identifiers))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        answers = await asyncio.gather(
            *(
                client.post("/graphql", json={"query": QUERY, "variables": {"i": i}})
                for i in identifiers
            )
        )
    wrong = [a for a in answers if a.json().get("data", {}).get("cluster") is None]
    if wrong:
        raise SystemExit(f"{len(wrong)} wrong answers")


def _hit_latencies(app: object, loop: asyncio.AbstractEventLoop, hits: int) -> tuple[float, float]:
    """Median seconds of a hit: in the cache store alone, and through the cluster service."""
    gateway = app.state.gateway  # type: ignore[attr-defined]
    service, store = gateway.service, gateway.store

    async def measure() -> tuple[float, float]:
        identifier = demo_clusters()[0]["name"]
        await service.get(identifier)
        key = service.key(identifier)
        store_samples, service_samples = [], []
        for _ in range(hits):
            start = time.perf_counter()
            assert await store.get(key) is not None
            store_samples.append(time.perf_counter() - start)
            start = time.perf_counter()
            await service.get(identifier)
            service_samples.append(time.perf_counter() - start)
        return statistics.median(store_samples), statistics.median(service_samples)

    return asyncio.run_coroutine_threadsafe(measure(), loop).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--distinct", type=int, default=10)
    parser.add_argument("--hits", type=int, default=2000)
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
    )
    emulator_server = ServerThread(create_emulator(), lifespan="off").start()
    emulator = Emulator(emulator_server.url)
    os.environ["AWS_ENDPOINT_URL_PCS"] = emulator.url
    redis_server = RedisServer().start()
    names = [c["name"] for c in demo_clusters()][: args.distinct]
    identifiers = [names[n % len(names)] for n in range(args.burst)]
    results = {}
    try:
        for backend, url in (("memory", "memory://"), ("redis", redis_server.url)):
            emulator.reset()
            emulator.faults({"global": {"latencySeconds": 0.2}})
            app = create_app(Settings(cache_url=url))
            server = ServerThread(app).start()
            try:
                asyncio.run(_burst(server.url, identifiers))
                calls = emulator.calls()
                emulator.faults(None)
                latency = _hit_latencies(app, server.loop, args.hits)
            finally:
                server.stop()
            results[backend] = (calls / len(names), latency)
    finally:
        redis_server.stop()
        emulator_server.stop()
    for backend, (per_id, (store_hit, service_hit)) in results.items():
        print(
            f"{backend:7} PCS calls per distinct identifier under a {args.burst}-request burst: "
            f"{per_id:.2f}; median hit: store {store_hit * 1e6:.0f} us, "
            f"cluster service {service_hit * 1e6:.0f} us"
        )
    memory, redis = results["memory"][1], results["redis"][1]
    print(f"store hit, redis / memory: {redis[0] / memory[0]:.1f}x")
    print(
        f"cluster-service hit (near copy in front of redis), redis / memory: "
        f"{redis[1] / memory[1]:.2f}x"
    )


if __name__ == "__main__":
    main()
