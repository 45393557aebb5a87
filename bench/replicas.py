"""Replicas sharing Redis: PCS calls under a cold burst, one replica against three.

    python3 bench/replicas.py

Runs the emulator (answering in 0.2 s), a redis-server on a free port and gateways over real
HTTP on loopback, sharing that Redis, answer cache off. Fires about 200 requests at once over
5 clusters, spread over the replicas, and counts the emulator's GetCluster calls; then the
same burst again while the entries are fresh. Without a cross-replica lock each replica
makes its own call for a cluster none has stored yet: this shows what such a lock could save.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.app import create_app
from gateway.config import Settings
from gateway.emulator.app import create_emulator
from tests.support.servers import Emulator, RedisServer, ServerThread

IDENTIFIERS = ["demo-full", "demo-active", "demo-suspended", "demo-update-failed", "demo-minimal"]
QUERY = "query($i: String!) { cluster(identifier: $i) { name } }"


async def burst(urls: list[str], requests: int) -> int:
    """Requests at once, spread over the replicas; how many answered with a cluster."""
    limits = httpx.Limits(max_connections=requests + 10)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    url + "/graphql",
                    json={"query": QUERY, "variables": {"i": IDENTIFIERS[k % len(IDENTIFIERS)]}},
                )
                for url in urls
                for k in range(requests // len(urls))
            )
        )
    return sum(answer.json()["data"]["cluster"] is not None for answer in answers)


def main() -> int:
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
    )
    store = RedisServer().start()
    pcs = ServerThread(create_emulator(faults={"global": {"latencySeconds": 0.2}})).start()
    emulator = Emulator(pcs.url)
    os.environ["AWS_ENDPOINT_URL_PCS"] = pcs.url
    try:
        for replicas in (1, 3):
            redis.Redis.from_url(store.url).flushdb()
            settings = Settings(cache_url=store.url, rate_limit="off", answer_cache_max_entries=0)
            gateways = [ServerThread(create_app(settings)).start() for _ in range(replicas)]
            urls = [gateway.url for gateway in gateways]
            before = emulator.calls()
            answered = asyncio.run(burst(urls, 200))
            cold = emulator.calls() - before
            before = emulator.calls()
            asyncio.run(burst(urls, 200))
            warm = emulator.calls() - before
            print(
                f"{replicas} replica(s): cold burst, {answered} answers over "
                f"{len(IDENTIFIERS)} clusters: {cold} PCS calls "
                f"({cold / len(IDENTIFIERS):.2f} a cluster); the same burst while fresh: {warm}"
            )
            for gateway in gateways:
                gateway.stop()
    finally:
        pcs.stop()
        store.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
