"""Upstream protection benchmark: rate limit, deadline and breaker, each against a baseline.

    python3 bench/upstream_protection.py

Runs the emulator and gateways over real HTTP on loopback, and prints three comparisons
measured in the same run:
- 100 distinct identifiers at once against an emulator throttling at 5 calls a second: the
  most PCS calls in any one second and the answers PCS throttled, with the gateway's rate
  limit at 4/s against a gateway without one (a limit of 10,000/s);
- a PCS that answers after 3 s: the response time with a 0.5 s deadline against the time
  PCS takes;
- a PCS failing slowly (0.5 s, HTTP 500): the response time while the breaker is open
  against while it is still closed.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.app import create_app
from gateway.config import Settings
from gateway.emulator.app import create_emulator
from gateway.emulator.seed import minimal
from tests.support.servers import Emulator, ServerThread

QUERY = "query($i: String!) { cluster(identifier: $i) { name } }"


def _gateway(**settings: Any) -> ServerThread:
    return ServerThread(create_app(Settings(**settings))).start()


async def _burst(url: str, identifiers: list[str]) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=len(identifiers))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        responses = await asyncio.gather(
            *(
                client.post("/graphql", json={"query": QUERY, "variables": {"i": i}})
                for i in identifiers
            )
        )
    if {r.status_code for r in responses} != {200}:
        raise SystemExit("an answer was not HTTP 200")
    return [r.json() for r in responses]


def _most_in_a_second(emulator: Emulator) -> int:
    log = emulator.http.get("/_emulator/calls").json()["log"]
    times = sorted(e["at"] for e in log if e["operation"] == "GetCluster")
    most = first = 0
    for last, at in enumerate(times):
        while times[first] < at - 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def _rate(emulator: Emulator, names: list[str], label: str, **settings: Any) -> int:
    emulator.reset()
    for name in names:
        emulator.put_cluster(minimal(name))
    emulator.faults({"rateLimitPerSecond": 5})
    server = _gateway(**settings)
    try:
        answers = asyncio.run(_burst(server.url, names))
    finally:
        server.stop()
    data = sum(1 for a in answers if a["data"]["cluster"] is not None)
    codes = [e["extensions"] for a in answers for e in a.get("errors", [])]
    by_pcs = sum(1 for c in codes if c.get("awsErrorCode") == "ThrottlingException")
    by_gateway = sum(1 for c in codes if c["code"] == "THROTTLED" and "awsErrorCode" not in c)
    most = _most_in_a_second(emulator)
    print(
        f"{label:<22} PCS calls {emulator.calls():3d}, most in any second {most:3d}; "
        f"answers: data {data}, throttled by PCS {by_pcs}, held back by the gateway {by_gateway}"
    )
    return most


def _timed(url: str, identifier: str) -> float:
    start = time.perf_counter()
    httpx.post(f"{url}/graphql", json={"query": QUERY, "variables": {"i": identifier}}, timeout=30)
    return time.perf_counter() - start


def main() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    server = ServerThread(create_emulator(), lifespan="off").start()
    emulator = Emulator(server.url)
    os.environ["AWS_ENDPOINT_URL_PCS"] = server.url
    try:
        names = [f"bench-{n:03d}" for n in range(100)]
        unlimited = _rate(
            emulator, names, "no gateway rate limit", pcs_rate_limit_per_second=10_000
        )
        limited = _rate(
            emulator,
            names,
            "gateway limit 4/s",
            pcs_rate_limit_per_second=4,
            pcs_rate_limit_burst=4,
            pcs_rate_limit_max_wait_seconds=1.0,
        )
        print(f"most PCS calls in a second, limited / unlimited: {limited / unlimited:.2f}")

        emulator.reset()
        emulator.faults({"global": {"latencySeconds": 3}})
        gateway = _gateway(request_deadline_seconds=0.5, pcs_read_timeout_seconds=10)
        try:
            waits = [
                _timed(gateway.url, name) for name in ("demo-active", "demo-full", "demo-minimal")
            ]
        finally:
            gateway.stop()
        median = statistics.median(waits)
        print(
            f"PCS answering in 3.0 s, deadline 0.5 s: answered in {median:.3f} s "
            f"(median of 3), {median / 3.0:.2f}x the time PCS takes"
        )

        emulator.reset()
        emulator.faults({"global": {"latencySeconds": 0.5, "error": "InternalServerException"}})
        gateway = _gateway(breaker_failure_threshold=3, breaker_open_seconds=60, pcs_max_attempts=1)
        try:
            closed = [_timed(gateway.url, f"demo-{s}") for s in ("active", "creating", "updating")]
            opened = [_timed(gateway.url, f"demo-{s}") for s in ("deleting", "full", "minimal")]
        finally:
            gateway.stop()
        print(
            f"PCS failing in 0.5 s: breaker closed {statistics.median(closed):.3f} s, "
            f"open {statistics.median(opened):.3f} s "
            f"({statistics.median(opened) / statistics.median(closed):.3f}x); "
            f"PCS calls {emulator.calls()} for 6 requests"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
