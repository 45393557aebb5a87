"""Cached-query benchmark: the gateway against the fastest Node GraphQL servers, one run.

    python3 bench/cached_queries.py [--rounds 3] [--seconds 5] [--connections 32]
                                    [--scenarios full,status,...] [--memory-clusters 10000]
                                    [--plans 10000]
                                    [--json bench/results/cached-queries.json]

Installs what it needs (wrk from Debian's packages when run as root; the Node peers with
`npm ci` in bench/peers at the versions its package-lock.json pins), then starts, each
pinned to CPU 0 with taskset:

    gateway      the gateway (uvicorn, uvloop, httptools), answer cache on, no line per
                 request (as the Node peers run: Fastify's logger off)
    gateway-lines  the same writing its line per request (console format, as development)
    production   the same with production settings (see PRODUCTION_ENV: API key, JSON line
                 per request, per-caller rate limit), called with a key
    compiled     the same gateway with its answer cache off: every request executed by the
                 document's compiled plan, as every miss of a known document runs
    strawberry   the same with compiled plans off too: Strawberry with its parser and
                 validation caches behind Starlette, as every miss ran before plans
    keys         the gateway with 500 API keys (one partition), clusters refreshing every
                 second (settled TTL 1 s) and the per-caller rate limit on
    ceiling      a raw ASGI callable on uvicorn returning the same bytes
    apollo       Apollo Server 5, standalone
    mercurius    Mercurius on Fastify with graphql-jit (jit: 1)

    gateway-2w   the gateway with 2 (gateway-4w: 4) uvicorn workers, on the same one core

Scenarios (each server checked on every answer):

    full         the full cluster query of schema/examples, cached, POST
    status       the small `status` query, cached, POST
    full-get     the full query over GET with the document in the URL
    full-apq     the full query over GET by its APQ hash only (registered before the load)
    status-apq   the small query the same way
    new-shape    every request a document the server has never seen (same answer)
    mixed        the full query, with every 20th request's variables never seen before (an
                 extra variable the operation ignores): 5% answer-cache misses, each one a
                 full GraphQL execution of a known document
    known        the full query executed every request (answer cache off): the compiled
                 plan against Strawberry and the peers
    keys-500     the full query from 500 API keys in turn (`keys`), answers shared by the
                 callers' authorization partition, each request counted by the rate limit
    mixed-20     the full query, with every 5th request's variables never seen before (20%)
    production   the full query with production settings and an API key
    workers      the full query with 1, 2 and 4 uvicorn workers on the server's one core
    cold-burst   a fresh gateway, 1,000 requests from 200 clients at once over 5 clusters:
                 PCS calls counted (the gateway's own metric), time to answer them all
    memory       a gateway against an emulator of --memory-clusters full clusters: each
                 asked for once (cluster and answer caches full), peak RSS against the
                 RSS after the first answer
    plans        a gateway asked --plans distinct documents (answer cache off): RSS with
                 that many compiled plans held, against the RSS after the first

All serve schema/schema.graphql with the demo data the gateway answered at start (held in
memory by the Node peers; the gateway's cluster cache is warmed and its TTL set to an hour).
wrk runs on CPU 1, 32 connections, and checks every answer against the expected body
(only `ageSeconds` may differ). Servers take turns within each round (order rotated each
round), so the noise of a shared machine spreads over all of them; the ratios are taken
per round and their median reported.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEERS = BENCH / "peers"
FULL_QUERY = (ROOT / "schema" / "examples" / "cluster-full.graphql").read_text()
STATUS_QUERY = (ROOT / "schema" / "examples" / "cluster-status.graphql").read_text()
IDENTIFIER = "demo-full"
SERVER_CPU, LOAD_CPU = "0", "1"
API_KEY = "bench-key-0123456789abcdef"
#: Callers of the `keys-500` scenario: 500 keys of one authorization partition.
CALLER_KEYS = [f"bench-caller-{n:04d}-0123456789abcdef" for n in range(500)]
#: The `keys` gateway: clusters refresh every second, the per-caller rate limit counts
#: every request (at a budget the load stays under: each key sends about 1/500 of it).
KEYS_ENV = {
    "PCS_GATEWAY_API_KEYS": ",".join(f"{key}:pcs-gateway:secrets" for key in CALLER_KEYS),
    "PCS_GATEWAY_CACHE_TTL_SETTLED_SECONDS": "1",
    "PCS_GATEWAY_RATE_LIMIT": "6000/minute",
}

#: The gateway's production settings. Authentication, metrics and request ids are on:
#: metrics are always on; the key is sent in X-API-Key by every request of the scenario.
PRODUCTION_ENV = {
    "PCS_GATEWAY_ENVIRONMENT": "production",
    # Every request spends the caller's budget, answered from the cache or not: a budget no
    # load of this benchmark reaches, so the limiter's cost is measured, not its refusals.
    "PCS_GATEWAY_RATE_LIMIT": "100000000/minute",
    "PCS_GATEWAY_LOG_LEVEL": "info",
    # The full query reads the secret references: the key holds the scope that shows them.
    "PCS_GATEWAY_API_KEYS": f"{API_KEY}:pcs-gateway:secrets",
}
#: Every gateway process: an hour of freshness, so the data stays what the peers hold, and
#: no per-caller rate limit (production turns it back on).
GATEWAY_ENV = {
    # The peers have no per-caller budget; every request of the load is one caller.
    "PCS_GATEWAY_RATE_LIMIT": "off",
    # The peers log nothing per request (Fastify's logger off); `gateway-lines` and
    # `production` write their line per request.
    "PCS_GATEWAY_LOG_LEVEL": "warning",
    "PCS_GATEWAY_CACHE_TTL_SETTLED_SECONDS": "3600",
    "PCS_GATEWAY_CACHE_MAX_STALE_SECONDS": "0",
}
AGE = re.compile(rb'"ageSeconds":[-0-9.eE+]+')
FETCHED = re.compile(rb'"fetchedAt":"[^"]*"')


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    query: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    servers: tuple[str, ...] = ("gateway", "strawberry", "ceiling", "apollo", "mercurius")
    #: Sent by its APQ hash alone (GET), the document registered before the load.
    apq: bool = False
    #: Every Nth request one never seen before (0: never): a new document ("name": the
    #: operation renamed) or known document with new variables ("variables").
    unique_every: int = 0
    unique: str = "name"
    #: Send CALLER_KEYS in turn, one per request.
    keys: bool = False

    def request(self) -> tuple[str, bytes]:
        """Path and body of the request."""
        variables = {"identifier": IDENTIFIER}
        if self.apq:
            params = {
                "extensions": json.dumps(self.extensions()),
                "variables": json.dumps(variables),
            }
            return f"/graphql?{urlencode(params)}", b""
        if self.method == "GET":
            query = urlencode({"query": self.query, "variables": json.dumps(variables)})
            return f"/graphql?{query}", b""
        return "/graphql", json.dumps({"query": self.query, "variables": variables}).encode()

    def extensions(self) -> dict[str, Any]:
        sha256 = hashlib.sha256(self.query.encode()).hexdigest()
        return {"persistedQuery": {"version": 1, "sha256Hash": sha256}}

    def operation_name(self) -> str:
        found = re.search(r"query (\w+)", self.query)
        assert found is not None
        return found.group(1)


SCENARIOS = {
    "full": Scenario(
        "full",
        FULL_QUERY,
        servers=("gateway", "gateway-lines", "strawberry", "ceiling", "apollo", "mercurius"),
    ),
    "status": Scenario("status", STATUS_QUERY),
    "full-get": Scenario(
        "full-get",
        FULL_QUERY,
        method="GET",
        # Apollo refuses GETs without it (CSRF prevention); harmless for the others.
        headers=(("apollo-require-preflight", "true"),),
        servers=("gateway", "apollo", "mercurius"),
    ),
    "full-apq": Scenario(
        "full-apq",
        FULL_QUERY,
        method="GET",
        headers=(("apollo-require-preflight", "true"),),
        servers=("gateway", "apollo", "mercurius"),
        apq=True,
    ),
    "status-apq": Scenario(
        "status-apq",
        STATUS_QUERY,
        method="GET",
        headers=(("apollo-require-preflight", "true"),),
        servers=("gateway", "apollo", "mercurius"),
        apq=True,
    ),
    "new-shape": Scenario(
        "new-shape",
        FULL_QUERY,
        servers=("gateway", "strawberry", "apollo", "mercurius"),
        unique_every=1,
    ),
    "mixed": Scenario(
        "mixed",
        FULL_QUERY,
        servers=("gateway", "strawberry", "apollo", "mercurius"),
        unique_every=20,
        unique="variables",
    ),
    "known": Scenario(
        "known", FULL_QUERY, servers=("compiled", "strawberry", "ceiling", "apollo", "mercurius")
    ),
    "keys-500": Scenario(
        "keys-500",
        FULL_QUERY,
        headers=(("x-api-key", CALLER_KEYS[0]),),
        servers=("keys", "ceiling", "apollo", "mercurius"),
        keys=True,
    ),
    "mixed-20": Scenario(
        "mixed-20",
        FULL_QUERY,
        servers=("gateway", "apollo", "mercurius"),
        unique_every=5,
        unique="variables",
    ),
    "production": Scenario(
        "production",
        FULL_QUERY,
        headers=(("x-api-key", API_KEY),),
        servers=("production", "apollo", "mercurius"),
    ),
    "workers": Scenario("workers", FULL_QUERY, servers=("gateway", "gateway-2w", "gateway-4w")),
}
#: Scenarios that are not a wrk load against every server.
SPECIAL = ("cold-burst", "memory", "plans")


def free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port: int = listener.getsockname()[1]
        return port


def ensure_tools() -> None:
    if shutil.which("wrk") is None:
        if os.geteuid() != 0:
            raise SystemExit("wrk is missing: apt-get install wrk")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)
    if shutil.which("node") is None:
        raise SystemExit("node is missing: apt-get install nodejs npm")
    if not (PEERS / "node_modules" / "mercurius").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEERS, check=True)


def uvicorn(factory: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", f"bench.apps:{factory}", "--factory",
        "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning", *extra,
    ]  # fmt: skip


def start(server: Server) -> None:
    server.port = free_port()
    env = {**os.environ, **server.env, "PORT": str(server.port)}
    command = ["taskset", "-c", SERVER_CPU, *server.command]
    if "uvicorn" in server.command:
        command += ["--port", str(server.port)]
    # Logs are written (a line per request, as in production) and thrown away.
    server.process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} stopped at start")
        try:
            httpx.post(f"{server.url}/graphql", json={"query": "{ __typename }"}, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"{server.name} did not start")


def stop(server: Server) -> None:
    if server.process is not None and server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()


def fetch(server: Server, scenario: Scenario) -> bytes:
    path, body = scenario.request()
    headers = dict(scenario.headers)
    if scenario.apq:
        registered = httpx.post(
            server.url + "/graphql",
            json={
                "query": scenario.query,
                "variables": {"identifier": IDENTIFIER},
                "extensions": scenario.extensions(),
            },
            headers=headers,
            timeout=10,
        )
        if registered.status_code != 200 or "errors" in registered.json():
            raise SystemExit(f"{server.name} did not register {scenario.name}: {registered.text}")
    if scenario.method == "GET":
        response = httpx.get(server.url + path, headers=headers, timeout=10)
    else:
        headers["content-type"] = "application/json"
        response = httpx.post(server.url + path, content=body, headers=headers, timeout=10)
    if response.status_code != 200:
        raise SystemExit(f"{server.name} answered {response.status_code}: {response.text[:300]}")
    return response.content


def comparable(body: bytes) -> Any:
    """The answer without what may differ between correct answers (the fetch time and age)."""
    answer = json.loads(body)
    cluster = answer["data"]["cluster"]
    freshness = cluster.get("freshness")
    if freshness is not None:
        assert freshness["stale"] is False, "a stale answer in the benchmark"
        freshness.pop("ageSeconds")
        freshness.pop("fetchedAt")
    return answer


def wrk(
    server: Server,
    scenario: Scenario,
    expected: Path,
    body: Path,
    seconds: int,
    connections: int,
    keys: Path | None = None,
) -> dict[str, Any]:
    path, _ = scenario.request()
    env = {
        "BENCH_KEYS_FILE": str(keys) if keys is not None and scenario.keys else "",
        **os.environ,
        "BENCH_METHOD": scenario.method,
        "BENCH_PATH": path,
        "BENCH_BODY": str(body) if scenario.method == "POST" else "",
        "BENCH_EXPECTED": str(expected),
        "BENCH_UNIQUE_EVERY": str(scenario.unique_every),
        "BENCH_UNIQUE": scenario.unique,
        "BENCH_UNIQUE_NAME": scenario.operation_name(),
        "BENCH_RUN": str(time.monotonic_ns()),
        "BENCH_HEADERS": "\n".join(
            [f"{k}: {v}" for k, v in scenario.headers]
            + (["content-type: application/json"] if scenario.method == "POST" else [])
        ),
    }
    command = [
        "taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
        "--timeout", "5s", "-s", str(BENCH / "check.lua"), server.url,
    ]  # fmt: skip
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--scenarios", default=",".join([*SCENARIOS, *SPECIAL]))
    parser.add_argument("--memory-clusters", type=int, default=10_000)
    parser.add_argument("--plans", type=int, default=10_000)
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "cached-queries.json")
    args = parser.parse_args()
    chosen = args.scenarios.split(",")
    unknown = sorted(set(chosen) - {*SCENARIOS, *SPECIAL})
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(unknown)}")
    scenarios = [SCENARIOS[name] for name in chosen if name in SCENARIOS]
    ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="pcsgw-bench-"))
    gateway_env = {**GATEWAY_ENV, "PYTHONPATH": str(ROOT)}
    servers = {
        "gateway": Server("gateway", uvicorn("gateway"), gateway_env),
        "compiled": Server(
            "compiled",
            uvicorn("gateway"),
            {**gateway_env, "PCS_GATEWAY_ANSWER_CACHE_MAX_ENTRIES": "0"},
        ),
        "strawberry": Server(
            "strawberry",
            uvicorn("gateway"),
            {
                **gateway_env,
                "PCS_GATEWAY_ANSWER_CACHE_MAX_ENTRIES": "0",
                "PCS_GATEWAY_COMPILED_PLANS_MAX_ENTRIES": "0",
            },
        ),
        "keys": Server("keys", uvicorn("gateway"), {**gateway_env, **KEYS_ENV}),
        "production": Server("production", uvicorn("gateway"), {**gateway_env, **PRODUCTION_ENV}),
        "gateway-lines": Server(
            "gateway-lines", uvicorn("gateway"), {**gateway_env, "PCS_GATEWAY_LOG_LEVEL": "info"}
        ),
        "gateway-2w": Server("gateway-2w", uvicorn("gateway", "--workers", "2"), gateway_env),
        "gateway-4w": Server("gateway-4w", uvicorn("gateway", "--workers", "4"), gateway_env),
    }
    needed = {name for scenario in scenarios for name in scenario.servers}
    running: list[Server] = []
    try:
        for name in (
            "gateway",
            "gateway-lines",
            "compiled",
            "strawberry",
            "keys",
            "production",
            "gateway-2w",
            "gateway-4w",
        ):
            if name in needed or name == "gateway":
                start(servers[name])
                running.append(servers[name])
        # The data every peer serves: what the gateway answers, fetched once.
        reference = json.loads(fetch(servers["gateway"], SCENARIOS["full"]))
        data_file = work / "clusters.json"
        data_file.write_text(json.dumps({IDENTIFIER: reference["data"]["cluster"]}))
        ceiling_body = work / "ceiling.json"
        ceiling_body.write_bytes(fetch(servers["gateway"], SCENARIOS["full"]))
        peers_env = {"BENCH_DATA": str(data_file), "BENCH_CEILING_BODY": str(ceiling_body)}
        servers["ceiling"] = Server(
            "ceiling", uvicorn("ceiling", "--lifespan", "off"), {**gateway_env, **peers_env}
        )
        servers["apollo"] = Server("apollo", ["node", str(PEERS / "apollo.mjs")], peers_env)
        servers["mercurius"] = Server(
            "mercurius", ["node", str(PEERS / "mercurius.mjs")], peers_env
        )
        for name in ("ceiling", "apollo", "mercurius"):
            if name in needed:
                start(servers[name])
                running.append(servers[name])

        keys_file = work / "keys.txt"
        keys_file.write_text("\n".join(CALLER_KEYS) + "\n")
        # Expected answers, checked against the gateway's before any load.
        files: dict[tuple[str, str], tuple[Path, Path]] = {}
        for scenario in scenarios:
            truth = comparable(fetch(servers["gateway"], scenario))
            for name in scenario.servers:
                answer = fetch(servers[name], scenario)
                if name != "ceiling" and comparable(answer) != truth:
                    raise SystemExit(f"{name} answers {scenario.name} differently")
                expected = work / f"{scenario.name}-{name}.expected"
                expected.write_bytes(
                    FETCHED.sub(b'"fetchedAt":""', AGE.sub(b'"ageSeconds":0', answer))
                )
                body = work / f"{scenario.name}.body"
                body.write_bytes(scenario.request()[1])
                files[(scenario.name, name)] = (expected, body)

        results: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for round_ in range(args.rounds):
            for scenario in scenarios:
                names = list(scenario.servers)
                shift = round_ % len(names)
                for name in names[shift:] + names[:shift]:
                    expected, body = files[(scenario.name, name)]
                    server = servers[name]
                    wrk(server, scenario, expected, body, args.warmup, args.connections, keys_file)
                    result = wrk(
                        server, scenario, expected, body, args.seconds, args.connections, keys_file
                    )
                    results.setdefault(scenario.name, {}).setdefault(name, []).append(result)
                    print(
                        f"round {round_ + 1} {scenario.name:<10} {name:<10} "
                        f"{result['rps']:>9.0f} req/s  p99 {result['p99_ms']:6.2f} ms  "
                        f"wrong {result['wrong']}",
                        flush=True,
                    )
        report = summarise(results, {s.name: s.peak_rss_mb() for s in running})
        for server in running:
            stop(server)
        running.clear()
        if "cold-burst" in chosen:
            report["cold_burst"] = cold_burst(gateway_env)
        if "memory" in chosen:
            report["memory"] = memory(gateway_env, args.memory_clusters)
        if "plans" in chosen:
            report["plans"] = plans_memory(gateway_env, args.plans)
        report["command"] = " ".join(["python3", "bench/cached_queries.py", *sys.argv[1:]])
        report["machine"] = machine()
        print_table(report)
        print_special(report)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwritten to {args.json}")
        runs = [run for by_server in results.values() for v in by_server.values() for run in v]
        return 1 if any(run["wrong"] or run["errors"] for run in runs) else 0
    finally:
        for server in running:
            stop(server)
        shutil.rmtree(work, ignore_errors=True)


def summarise(
    results: dict[str, dict[str, list[dict[str, Any]]]], rss: dict[str, float]
) -> dict[str, Any]:
    """Medians over rounds, and each server's ratios to the peers taken round by round."""
    report: dict[str, Any] = {"scenarios": {}}
    for scenario, by_server in results.items():
        rows: dict[str, Any] = {}
        for name, runs in by_server.items():
            row: dict[str, Any] = {
                "rps": statistics.median(r["rps"] for r in runs),
                "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                "errors": sum(r["errors"] for r in runs),
                "wrong": sum(r["wrong"] for r in runs),
                "checked": sum(r["checked"] for r in runs),
                "peak_rss_mb": round(rss.get(name, 0.0), 1),
                "rounds": runs,
            }
            for peer in ("apollo", "mercurius", "ceiling", "strawberry", "compiled", "gateway"):
                if peer in by_server and peer != name:
                    # A run that answered nothing (a starved round) has no ratio.
                    pairs = [
                        (a, b)
                        for a, b in zip(runs, by_server[peer], strict=True)
                        if a["rps"] > 0 and b["rps"] > 0
                    ]
                    if not pairs:
                        continue
                    row[f"rps_vs_{peer}"] = statistics.median(a["rps"] / b["rps"] for a, b in pairs)
                    row[f"p99_vs_{peer}"] = statistics.median(
                        a["p99_ms"] / b["p99_ms"] for a, b in pairs
                    )
            rows[name] = row
        report["scenarios"][scenario] = rows
    return report


def metric(server: Server, name: str) -> float:
    """The sum of one metric's samples in the server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def cold_burst(env: dict[str, str]) -> dict[str, Any]:
    """A fresh gateway asked by 200 clients at once for 5 clusters, 1,000 requests in all."""
    identifiers = [
        "demo-full",
        "demo-active",
        "demo-suspended",
        "demo-update-failed",
        "demo-minimal",
    ]
    server = Server("cold-burst", uvicorn("gateway"), env)
    start(server)
    try:
        before = metric(server, "pcsgw_cache_upstream_calls_total")

        async def burst() -> tuple[float, int]:
            # Plain keep-alive connections: a Python HTTP client pool would be the bottleneck.
            gate = asyncio.Event()

            async def client(number: int) -> int:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                await gate.wait()
                right = 0
                for n in range(5):
                    identifier = identifiers[(number + n) % len(identifiers)]
                    body = json.dumps(
                        {"query": FULL_QUERY, "variables": {"identifier": identifier}}
                    ).encode()
                    writer.write(
                        b"POST /graphql HTTP/1.1\r\nhost: bench\r\n"
                        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                        % (len(body), body)
                    )
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
                    answer = json.loads(await reader.readexactly(length))
                    right += answer["data"]["cluster"]["name"] == identifier
                writer.close()
                return right

            tasks = [asyncio.ensure_future(client(n)) for n in range(200)]
            await asyncio.sleep(0.5)
            started = time.perf_counter()
            gate.set()
            right = sum(await asyncio.gather(*tasks))
            return time.perf_counter() - started, right

        seconds, right = asyncio.run(burst())
        calls = metric(server, "pcsgw_cache_upstream_calls_total") - before
    finally:
        stop(server)
    return {
        "requests": 1000,
        "clients": 200,
        "identifiers": len(identifiers),
        "right_answers": right,
        "pcs_calls": int(calls),
        "pcs_calls_per_identifier": calls / len(identifiers),
        "seconds": round(seconds, 3),
    }


def memory(env: dict[str, str], clusters: int) -> dict[str, Any]:
    """Peak RSS with `clusters` clusters in the cluster cache and their answers cached."""
    emulator = Server(
        "emulator",
        uvicorn("emulator", "--lifespan", "off"),
        {**env, "BENCH_CLUSTERS": str(clusters)},
    )
    emulator.port = free_port()
    emulator.process = subprocess.Popen(
        ["taskset", "-c", LOAD_CPU, *emulator.command, "--port", str(emulator.port)],
        cwd=ROOT,
        env={**os.environ, **emulator.env},
        stdout=subprocess.DEVNULL,
    )
    gateway_env = {
        **env,
        "AWS_ENDPOINT_URL_PCS": emulator.url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "PCS_GATEWAY_CACHE_MAX_ENTRIES": str(4 * clusters),
        "PCS_GATEWAY_PCS_RATE_LIMIT_PER_SECOND": "10000",
        "PCS_GATEWAY_PCS_RATE_LIMIT_BURST": "10000",
    }
    server = Server("memory", uvicorn("upstream"), gateway_env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(emulator.url + "/_emulator/calls", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("the emulator did not start") from None
                time.sleep(0.2)
        start(server)

        def ask(client: httpx.Client, n: int) -> None:
            answer = client.post(
                "/graphql", json={"query": FULL_QUERY, "variables": {"identifier": f"bench-{n}"}}
            ).json()
            if answer.get("data", {}).get("cluster", {}).get("name") != f"bench-{n}":
                raise SystemExit(f"bench-{n} answered {str(answer)[:300]}")

        with httpx.Client(base_url=server.url, timeout=30) as client:
            ask(client, 0)
            baseline = server.peak_rss_mb()
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda n: ask(client, n), range(clusters)))
            seconds = time.perf_counter() - started
        peak = server.peak_rss_mb()
        answers = metric(server, "pcsgw_answer_cache_entries")
        answer_bytes = metric(server, "pcsgw_answer_cache_bytes")
    finally:
        stop(server)
        stop(emulator)
    return {
        "clusters": clusters,
        "answers_cached": int(answers),
        "answer_cache_mb": round(answer_bytes / 1024 / 1024, 1),
        "rss_after_first_answer_mb": round(baseline, 1),
        "peak_rss_mb": round(peak, 1),
        "peak_over_first": round(peak / baseline, 2),
        "seconds_to_fill": round(seconds, 1),
    }


def plans_memory(env: dict[str, str], count: int) -> dict[str, Any]:
    """RSS with `count` distinct documents compiled and held (answer cache off)."""
    server = Server(
        "plans",
        uvicorn("gateway"),
        {
            **env,
            "PCS_GATEWAY_ANSWER_CACHE_MAX_ENTRIES": "0",
            "PCS_GATEWAY_COMPILED_PLANS_MAX_ENTRIES": str(count),
            # Memory is measured here, not latency: a starved machine must not fail it.
            "PCS_GATEWAY_REQUEST_DEADLINE_SECONDS": "60",
        },
    )
    start(server)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:

            def ask(n: int) -> None:
                query = FULL_QUERY.replace("ClusterFull", f"ClusterFull{n}")
                answer = client.post("/graphql", json={"query": query}).json()
                cluster = (answer.get("data") or {}).get("cluster") or {}
                if cluster.get("name") != IDENTIFIER:
                    raise SystemExit(f"document {n} answered {str(answer)[:300]}")

            ask(0)
            ask(0)
            baseline = server.peak_rss_mb()
            started = time.perf_counter()
            # Twice each: a document is compiled the second time it comes.
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(ask, [n for n in range(1, count) for _ in range(2)]))
            seconds = time.perf_counter() - started
        held = metric(server, "pcsgw_compiled_plans")
        executed = metric(server, "pcsgw_compiled_executions_total")
        peak = server.peak_rss_mb()
    finally:
        stop(server)
    return {
        "documents": count,
        "plans_held": int(held),
        "executed_by_plan": int(executed),
        "rss_after_first_mb": round(baseline, 1),
        "peak_rss_mb": round(peak, 1),
        "kb_per_plan": round((peak - baseline) * 1024 / max(1, held), 1),
        "seconds": round(seconds, 1),
    }


def print_special(report: dict[str, Any]) -> None:
    burst = report.get("cold_burst")
    if burst is not None:
        print(
            f"\ncold burst: {burst['requests']} requests from {burst['clients']} clients over "
            f"{burst['identifiers']} clusters: {burst['pcs_calls']} PCS calls "
            f"({burst['pcs_calls_per_identifier']:.2f} per cluster), "
            f"{burst['right_answers']} right answers in {burst['seconds']} s"
        )
    plans = report.get("plans")
    if plans is not None:
        print(
            f"plans: {plans['plans_held']} documents compiled and held: peak RSS "
            f"{plans['peak_rss_mb']} MB against {plans['rss_after_first_mb']} MB after the first "
            f"({plans['kb_per_plan']} KB a plan)"
        )
    held = report.get("memory")
    if held is not None:
        print(
            f"memory: {held['clusters']} clusters cached, {held['answers_cached']} answers "
            f"({held['answer_cache_mb']} MB) cached: peak RSS {held['peak_rss_mb']} MB, "
            f"{held['peak_over_first']}x the {held['rss_after_first_answer_mb']} MB after the "
            f"first answer (filled in {held['seconds_to_fill']} s)"
        )


def print_table(report: dict[str, Any]) -> None:
    print()
    header = f"{'scenario':<11}{'server':<12}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
    header += f"{'wrong':>7}{'RSS MB':>8}{'vs apollo':>11}{'vs mercurius':>14}"
    print(header)
    for scenario, rows in report["scenarios"].items():
        for name, row in sorted(rows.items(), key=lambda item: -item[1]["rps"]):
            versus = [
                f"{row[f'rps_vs_{peer}']:.2f}x" if f"rps_vs_{peer}" in row else "-"
                for peer in ("apollo", "mercurius")
            ]
            print(
                f"{scenario:<11}{name:<12}{row['rps']:>9.0f}{row['p50_ms']:>8.2f}"
                f"{row['p99_ms']:>8.2f}{row['wrong'] + row['errors']:>7}"
                f"{row['peak_rss_mb']:>8.1f}{versus[0]:>11}{versus[1]:>14}"
            )


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, Node {node}"


if __name__ == "__main__":
    raise SystemExit(main())
