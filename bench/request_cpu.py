"""CPU time of one request on the answer cache's hit path and on its miss path, in process.

    python3 bench/request_cpu.py [--tree PATH] [--hits 20000] [--misses 1000] [--repeat 3]
    python3 bench/request_cpu.py --keys 500                     # callers by API key
    python3 bench/request_cpu.py --keys 500 --settled-ttl 1 --concurrency 32 --rounds
    python3 bench/request_cpu.py --lines console|json            # a request line each
    python3 bench/request_cpu.py --keys 500 --profile out.prof   # cProfile of the hit loop

No sockets and no load generator: the gateway's ASGI app is called directly, its lifespan
run, against the emulator on a loopback port, with the full cluster query
(schema/examples/cluster-full.graphql). Time is the process's CPU time per request
(`time.process_time`), so a busy machine slows the run but hardly moves the figure: two
trees (`--tree` points at another checkout, e.g. a `git worktree` of an older commit) can
be compared on a shared machine where throughput runs are too noisy. Hits: the answer
cache on, the same request again and again. Misses: the answer cache off, every request
executed (by the compiled plan once the document has come twice, where the tree has one).
The hit figure is the least CPU of batches of 1000 requests (a busy machine only ever
adds); `hit_cpu_us_mean` is the mean of them all, which holds what happens now and then.

`--keys N` sends each request with the next of N API keys in turn (the `keys` scenario of
bench/cached_queries.py: every key may read secrets, a per-caller rate limit of
6000/minute), so the gate's authentication and rate limit are in the figure. With
`--settled-ttl 1` the cluster refreshes once a second as in that scenario, and the misses
that follow each refresh are in the mean (`hit_run_misses` counts them); `--concurrency N`
keeps N requests in flight, as a load generator's connections do, so those misses overlap.
`--rounds` lets the event loop run a round between requests, as a server's loop does, so
the work of background tasks (an expiry task, a flush of the log) is in the figure.
`--lines` logs a request line for each request (level info, in the given format) to
`--log-file` (default /dev/null). `--profile` writes a cProfile of the hit loop alone
(`python3 -m pstats FILE`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def serve_emulator(create_emulator: Any) -> str:
    import uvicorn

    config = uvicorn.Config(
        create_emulator(), host="127.0.0.1", port=0, log_level="error", lifespan="off"
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def per_request(
    app: Any,
    body: bytes,
    warmup: int,
    count: int,
    *,
    keys: list[bytes] | None = None,
    profile: Path | None = None,
    rounds: bool = False,
    concurrency: int = 1,
    batch: int = 1000,
) -> tuple[float, float]:
    """Microseconds of CPU per request after `warmup` requests: the least of its batches,
    and the mean of all."""
    lifespan_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan_out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await lifespan_in.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(
        app(
            {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
            lifespan_in.get,
            lifespan_out.put,
        )
    )
    started = await lifespan_out.get()
    assert started["type"] == "lifespan.startup.complete", started

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    base_headers = [
        (b"host", b"gateway"),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
    ]
    key_headers = [[*base_headers, (b"x-api-key", key)] for key in keys or ()]
    turn = 0

    async def one() -> None:
        nonlocal turn
        sent: list[dict[str, Any]] = []
        if key_headers:
            headers = key_headers[turn % len(key_headers)]
            turn += 1
        else:
            headers = base_headers

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

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
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        await app(scope, receive, send)
        assert sent[0]["status"] == 200, sent
        assert b'"errors"' not in sent[1]["body"], sent[1]["body"][:300]
        if rounds:
            await asyncio.sleep(0)

    async def some(number: int) -> None:
        for _ in range(number):
            await one()

    async def together(number: int) -> None:
        # `concurrency` callers at once, as a load generator's connections are.
        if concurrency == 1:
            await some(number)
            return
        shares = [number // concurrency + (n < number % concurrency) for n in range(concurrency)]
        await asyncio.gather(*(some(share) for share in shares))

    await together(warmup)
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    # In batches, the least kept: other processes on the machine only ever add to a batch.
    batches = []
    for done in range(0, count, batch):
        size = min(batch, count - done)
        began = time.process_time()
        await together(size)
        batches.append((time.process_time() - began) / size)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    await lifespan_in.put({"type": "lifespan.shutdown"})
    await lifespan_out.get()
    await lifespan
    return min(batches) * 1e6, sum(batches) / len(batches) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT)
    parser.add_argument("--hits", type=int, default=20_000)
    parser.add_argument("--misses", type=int, default=1_000)
    parser.add_argument("--keys", type=int, default=0, help="rotate over this many API keys")
    parser.add_argument("--settled-ttl", type=float, default=3600, help="settled clusters' TTL")
    parser.add_argument("--lines", choices=("console", "json"), help="log a line per request")
    parser.add_argument("--log-file", type=Path, default=Path(os.devnull))
    parser.add_argument("--profile", type=Path, help="write a cProfile of the hit loop here")
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure the hits this many times, keep the least"
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests in flight at once (hits only)"
    )
    parser.add_argument(
        "--rounds",
        action="store_true",
        help="let the event loop run a round between requests, as a server's does",
    )
    args = parser.parse_args()
    tree = args.tree.resolve()
    sys.path.insert(0, str(tree))
    from gateway.app import create_app
    from gateway.config import Settings
    from gateway.emulator.app import create_emulator

    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_PCS": serve_emulator(create_emulator),
        }
    )
    query = (tree / "schema" / "examples" / "cluster-full.graphql").read_text()
    body = json.dumps({"query": query, "variables": {"identifier": "demo-full"}}).encode()
    common: dict[str, Any] = {
        "log_level": "warning",
        "cache_ttl_settled_seconds": args.settled_ttl,
        "rate_limit": "",
    }
    keys: list[bytes] | None = None
    if args.keys:
        names = [f"bench-caller-{n:04d}-0123456789abcdef" for n in range(args.keys)]
        common["api_keys"] = ",".join(f"{name}:pcs-gateway:secrets" for name in names)
        common["rate_limit"] = "6000/minute"
        keys = [name.encode() for name in names]
    log_file = None
    if args.lines:
        from gateway.observe import logs

        common.update(log_level="info", log_format=args.lines)
        log_file = args.log_file.open("w", encoding="utf-8")
        sys.stderr = log_file  # the handler's stream is sys.stderr when configured
        logs.configure(Settings(**common))
    apps = [create_app(Settings(**common)) for _ in range(args.repeat)]
    hits = [
        asyncio.run(
            per_request(
                app,
                body,
                200,
                args.hits,
                keys=keys,
                profile=args.profile,
                rounds=args.rounds,
                concurrency=args.concurrency,
            )
        )
        for app in apps
    ]
    hit, hit_mean = min(least for least, _ in hits), min(mean for _, mean in hits)
    miss, _ = asyncio.run(
        per_request(
            create_app(Settings(answer_cache_max_entries=0, **common)),
            body,
            50,
            args.misses,
            keys=keys,
            rounds=args.rounds,
        )
    )
    if log_file is not None:
        sys.stderr.flush()
        sys.stderr = sys.__stderr__
        log_file.close()
    figures = {
        "hit_cpu_us": round(hit, 1),
        "hit_cpu_us_mean": round(hit_mean, 1),
        "miss_cpu_us": round(miss, 1),
        # Of the last hit run: the answers that had to be built again (after a refresh).
        "hit_run_misses": apps[-1].stats.misses,
        "hit_run_waits": getattr(apps[-1].stats, "waits", 0),
    }
    options = {
        "keys": args.keys,
        "settled_ttl": args.settled_ttl,
        "lines": args.lines,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
    }
    print(json.dumps({"tree": str(tree), **options, **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
