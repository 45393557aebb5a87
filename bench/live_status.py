"""Live status under load: memory per idle subscription, delivery delay of one status change.

Starts the emulator (statuses stay where set) and `pcs-gateway serve` in a process of its
own, opens N subscriptions to clusterUpdated over WebSocket (graphql-transport-ws, up to
100 a connection) or SSE (graphql-sse, one stream each), reads the gateway's resident
memory before and after, flips the cluster's status once and times its arrival at every
subscriber.

    python3 bench/live_status.py --subscribers 10000 --transport ws
    python3 bench/live_status.py --subscribers 1000 --transport sse

Delays are measured from the status change in the emulator, so they include the wait for
the next poll (up to one interval); the spread is measured from the first delivery.
Results go to bench/results/live-status-<transport>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.emulator import seed
from gateway.emulator.app import create_emulator
from tests.support.servers import ServerThread, free_port

QUERY = "subscription W($id: String!) { clusterUpdated(identifier: $id) { name status } }"
PER_CONNECTION = 100
#: SSE streams opening at once, and streams per HTTP client.
OPENING = 200
PER_POOL = 500


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def until(condition: Any, seconds: float) -> bool:
    """Whether `condition()` turns true within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return bool(condition())


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def websocket_subscribers(url: str, count: int, arrivals: list[float]) -> list[Any]:
    """`count` subscriptions over WebSockets; each UPDATING event's arrival is recorded."""
    sockets = []
    ready = 0
    for start in range(0, count, PER_CONNECTION):
        socket = await connect(
            url.replace("http", "ws") + "/graphql",
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
            max_queue=None,
        )
        await socket.send(json.dumps({"type": "connection_init"}))
        await socket.recv()
        for n in range(start, min(count, start + PER_CONNECTION)):
            payload = {"query": QUERY, "variables": {"id": "bench-live"}}
            await socket.send(json.dumps({"id": str(n), "type": "subscribe", "payload": payload}))
        sockets.append(socket)

    async def read(socket: Any) -> None:
        nonlocal ready
        async for raw in socket:
            message = json.loads(raw)
            if message.get("type") != "next":
                continue
            status = message["payload"]["data"]["clusterUpdated"]["status"]
            if status == "UPDATING":
                arrivals.append(time.time())
            else:
                ready += 1

    readers = [asyncio.create_task(read(s)) for s in sockets]
    await until(lambda: ready >= count, 600)
    return readers + sockets


async def sse_subscribers(
    url: str, count: int, arrivals: list[float], failures: Counter[str]
) -> list[Any]:
    """`count` graphql-sse streams; each UPDATING event's arrival is recorded.

    Streams open at most `OPENING` at a time, as browsers arriving over a few seconds would:
    10,000 connects at once overflow the listen backlog and leave connections idle past the
    gateway's keep-alive and header timeouts while the client's own loop catches up. Each
    client holds `PER_POOL` streams, since a connection pool is scanned on every request.
    """
    timeout = httpx.Timeout(30.0, read=3600.0)
    pools = [
        httpx.AsyncClient(
            base_url=url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=PER_POOL, max_keepalive_connections=0),
        )
        for _ in range(0, count, PER_POOL)
    ]
    opening = asyncio.Semaphore(OPENING)
    ready = 0

    async def stream(http: httpx.AsyncClient) -> None:
        nonlocal ready
        body = {"query": QUERY, "variables": {"id": "bench-live"}}
        headers = {"accept": "text/event-stream"}
        await opening.acquire()
        opened = False
        try:
            async with http.stream("POST", "/graphql", json=body, headers=headers) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data:") or len(line) < 8:
                        continue
                    status = json.loads(line[5:])["data"]["clusterUpdated"]["status"]
                    if status == "UPDATING":
                        arrivals.append(time.time())
                    else:
                        ready += 1
                        opened = True
                        opening.release()
        except Exception as exc:  # counted and reported: a stream that failed
            failures[type(exc).__name__] += 1
        finally:
            if not opened:
                opening.release()

    tasks = [asyncio.create_task(stream(pools[n // PER_POOL])) for n in range(count)]
    await until(lambda: ready + sum(failures.values()) >= count, 1800)
    return [*tasks, *pools]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    emulator = ServerThread(
        create_emulator([seed.full("bench-live")], settle_seconds=3600), lifespan="off"
    ).start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_PCS": emulator.url,
        "AWS_ACCESS_KEY_ID": "AKIDBENCHLIVE",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_REGION": "us-east-1",
        "PYTHONPATH": str(ROOT),
        "PCS_GATEWAY_CACHE_TTL_SETTLED_SECONDS": str(args.interval),
        "PCS_GATEWAY_CACHE_TTL_TRANSITIONAL_SECONDS": str(args.interval),
        "PCS_GATEWAY_LIVE_MAX_SUBSCRIPTIONS_PER_CALLER": str(args.subscribers + 10),
        "PCS_GATEWAY_RATE_LIMIT": "",
        "PCS_GATEWAY_WEBSOCKETS": "true",
        "PCS_GATEWAY_LOG_LEVEL": "warning",
    }
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--port", str(port), cwd=ROOT, env=env
    )
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            for _ in range(600):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        before = rss_bytes(gateway.pid)
        arrivals: list[float] = []
        failures: Counter[str] = Counter()
        opened = time.perf_counter()
        if args.transport == "ws":
            held = await websocket_subscribers(url, args.subscribers, arrivals)
        else:
            held = await sse_subscribers(url, args.subscribers, arrivals, failures)
        setup_seconds = time.perf_counter() - opened
        await asyncio.sleep(2.0)
        after = rss_bytes(gateway.pid)
        flipped = time.time()
        async with httpx.AsyncClient(base_url=emulator.url) as control:
            flip = {"status": "UPDATING"}
            (
                await control.post("/_emulator/clusters/bench-live/status", json=flip)
            ).raise_for_status()
        open_now = args.subscribers - sum(failures.values())
        await until(lambda: len(arrivals) >= open_now, args.interval + 30)
        delays = [arrival - flipped for arrival in arrivals]
        spread = [arrival - min(arrivals) for arrival in arrivals] if arrivals else []
        for item in held:
            if isinstance(item, asyncio.Task):
                item.cancel()
            else:
                await item.aclose() if isinstance(item, httpx.AsyncClient) else await item.close()
        return {
            "transport": args.transport,
            "subscribers": args.subscribers,
            "pollIntervalSeconds": args.interval,
            "setupSeconds": round(setup_seconds, 2),
            "gatewayRssBeforeBytes": before,
            "gatewayRssAfterBytes": after,
            "bytesPerIdleSubscription": round((after - before) / max(1, open_now)),
            "failed": dict(failures),
            "delivered": len(arrivals),
            "delaySecondsP50": round(statistics.median(delays), 3) if delays else None,
            "delaySecondsP99": round(percentile(delays, 0.99), 3) if delays else None,
            "spreadSecondsP50": round(statistics.median(spread), 3) if spread else None,
            "spreadSecondsP99": round(percentile(spread, 0.99), 3) if spread else None,
            "cpus": os.cpu_count(),
        }
    finally:
        gateway.terminate()
        await asyncio.wait_for(gateway.wait(), 30)
        emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--transport", choices=["ws", "sse"], default="ws")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = asyncio.run(measure(args))
    output = args.output or ROOT / "bench" / "results" / f"live-status-{args.transport}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
