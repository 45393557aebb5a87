"""Where a never-seen document's time goes: cProfile over in-process requests.

    python3 bench/new_document_profile.py [--requests 300] [--compiled-off] [--top 25]

Runs the gateway in process (demo emulator, answer cache off, no request lines), warms the
cluster cache, then sends the full cluster query of schema/examples with a new operation
name each request straight to the ASGI app, under cProfile; prints the time per request and
the functions with the most cumulative time, grouped by phase (parse, validation, execution,
encoding).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
FULL = (ROOT / "schema" / "examples" / "cluster-full.graphql").read_text()


async def request(app: Any, body: bytes) -> bytes:
    chunks: list[bytes] = []
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"localhost")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return b"".join(chunks)


async def main(requests: int, top: int) -> None:
    from gateway.app import create_app
    from gateway.config import Settings

    app = create_app(Settings(demo=True, log_level="warning"))
    async with app.router.lifespan_context(app):
        body = orjson.dumps({"query": FULL})
        first = orjson.loads(await request(app, body))
        assert first["data"]["cluster"]["name"] == "demo-full", first
        bodies = [
            orjson.dumps({"query": FULL.replace("ClusterFull", f"ClusterFull{n}")})
            for n in range(requests)
        ]
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        for one in bodies:
            await request(app, one)
        profile.disable()
        elapsed = time.perf_counter() - started
    print(f"{requests} new documents: {elapsed / requests * 1000:.2f} ms each (under cProfile)")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(top)
    print(out.getvalue())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--compiled-off", action="store_true")
    args = parser.parse_args()
    os.environ["PCS_GATEWAY_ANSWER_CACHE_MAX_ENTRIES"] = "0"
    if args.compiled_off:
        os.environ["PCS_GATEWAY_COMPILED_PLANS_MAX_ENTRIES"] = "0"
    asyncio.run(main(args.requests, args.top))
