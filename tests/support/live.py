"""Live status test helpers: an emulator whose statuses stay put, WebSocket and SSE clients,
gateways as processes of their own."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from gateway.emulator import seed
from gateway.emulator.app import create_emulator
from tests.support.gateway import AWS_TEST_ENVIRONMENT, assert_no_leaks
from tests.support.serve import ROOT, readyz
from tests.support.servers import ServerThread, free_port

CLUSTER_UPDATED = """
subscription Watch($id: String!) {
  clusterUpdated(identifier: $id) { name status modifiedAt freshness { ageSeconds } }
}
"""
CLUSTERS_UPDATED = """
subscription Watch($ids: [String!]!) { clustersUpdated(identifiers: $ids) { name status } }
"""
#: The reference clients from npm (graphql-ws, graphql-sse) and their driver script.
CLIENTS = Path(__file__).parent.parent / "js"
#: Poll interval of the tests: the cache TTLs, which the intervals default to.
INTERVAL = 1.0
FAST = {
    "cache_ttl_settled_seconds": INTERVAL,
    "cache_ttl_transitional_seconds": INTERVAL,
    "websockets": True,
    # Each subscription spends the caller's rate limit; these tests open a thousand at once.
    "rate_limit": "",
}


class LiveEmulator:
    """An emulator of its own (statuses stay where set), with its control API."""

    def __init__(self, clusters: list[dict[str, Any]]) -> None:
        self.server = ServerThread(create_emulator(clusters, settle_seconds=3600), lifespan="off")
        self.url = self.server.url

    def set_status(self, name: str, status: str) -> None:
        response = httpx.post(
            f"{self.url}/_emulator/clusters/{name}/status", json={"status": status}, timeout=5
        )
        response.raise_for_status()

    def faults(self, plan: dict[str, Any] | None) -> None:
        if plan is None:
            httpx.delete(f"{self.url}/_emulator/faults", timeout=5).raise_for_status()
        else:
            httpx.put(f"{self.url}/_emulator/faults", json=plan, timeout=5).raise_for_status()

    def delete(self, name: str) -> None:
        httpx.delete(f"{self.url}/_emulator/clusters/{name}", timeout=5).raise_for_status()

    def get_cluster_calls(self, since: float = 0.0) -> list[dict[str, Any]]:
        log = httpx.get(f"{self.url}/_emulator/calls", timeout=5).json()["log"]
        return [e for e in log if e["operation"] == "GetCluster" and e["at"] >= since]


@contextmanager
def running_live_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveEmulator]:
    """Ten clusters, live-0 to live-9, ACTIVE; gateways started meanwhile call this emulator."""
    emulator = LiveEmulator([seed.full(f"live-{n}") for n in range(10)])
    emulator.server.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_PCS", emulator.url)
    try:
        yield emulator
    finally:
        emulator.server.stop()


class WsClient:
    """A graphql-transport-ws client: messages by operation id, as they arrive."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.closed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.socket:
                assert isinstance(raw, str), "graphql-transport-ws messages are text frames"
                message = json.loads(raw)
                assert_no_leaks(message)
                if "id" in message:
                    self.messages.setdefault(message["id"], []).append(message)
        finally:
            self.closed.set()

    async def subscribe(self, op_id: str, query: str, variables: dict[str, Any]) -> None:
        payload = {"query": query, "variables": variables}
        await self.socket.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))

    def data(self, op_id: str) -> list[dict[str, Any]]:
        return [
            m["payload"]["data"]
            for m in self.messages.get(op_id, [])
            if m["type"] == "next" and m["payload"].get("data")
        ]

    def kinds(self, op_id: str) -> list[str]:
        return [m["type"] for m in self.messages.get(op_id, [])]


@asynccontextmanager
async def ws_client(
    url: str, headers: dict[str, str] | None = None, **init: Any
) -> AsyncIterator[WsClient]:
    address = url.replace("http://", "ws://") + "/graphql"
    async with connect(
        address,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        additional_headers=headers,
    ) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": init}))
        ack = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert ack["type"] == "connection_ack"
        client = WsClient(socket)
        try:
            yield client
        finally:
            client.reader.cancel()


class SseClient:
    """A graphql-sse client in distinct connections mode: one stream per subscription."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.ended = asyncio.Event()

    async def run(
        self,
        http: httpx.AsyncClient,
        query: str,
        variables: dict[str, Any],
        headers: dict[str, str] | None = None,
        url: str = "",
    ) -> None:
        """Read the stream until it ends; `url` is the gateway's when `http` has no base URL."""
        headers = {"accept": "text/event-stream", **(headers or {})}
        body = {"query": query, "variables": variables}
        try:
            async with http.stream(
                "POST", f"{url}/graphql", json=body, headers=headers
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                event = None
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event is not None:
                        raw = line.split(":", 1)[1].strip()
                        self.events.append((event, json.loads(raw) if raw else None))
                        event = None
        finally:
            self.ended.set()

    def data(self) -> list[dict[str, Any]]:
        return [payload["data"] for kind, payload in self.events if kind == "next"]


async def until(condition: Any, within: float, step: float = 0.02) -> bool:
    """Whether `condition()` turns true within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(step)
    return bool(condition())


def statuses(events: list[dict[str, Any]], field: str = "clusterUpdated") -> list[str]:
    return [event[field]["status"] for event in events]


@pytest.fixture(scope="module")
def node_clients() -> Path:
    """tests/js with its pinned packages installed (`npm ci` from the lock file)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed: apt-get install nodejs npm")
    if not (CLIENTS / "node_modules" / "graphql-ws").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENTS, check=True, timeout=300
        )
    return CLIENTS


class GatewayProcess:
    """`python3 -m gateway serve` in a process of its own, its output in a file.

    Unlike `tests.support.serve.ServeProcess` it returns before the process is ready, so
    several start at once, and it can be killed without a drain and read for its metrics.
    """

    def __init__(self, folder: Path, settings: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = folder / f"serve-{self.port}.log"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PCS_GATEWAY_")},
            **AWS_TEST_ENVIRONMENT,
            "PYTHONPATH": str(ROOT),
            **settings,
        }
        with self.output.open("w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def ready(self) -> bool:
        """Whether /readyz answers 200 (raises when the process has exited)."""
        if self.process.poll() is not None:
            raise AssertionError(
                f"serve exited {self.process.returncode}: {self.output.read_text()}"
            )
        answer = readyz(self.url)
        return answer is not None and answer.status_code == 200

    def wait_ready(self, within: float = 60) -> GatewayProcess:
        deadline = time.monotonic() + within
        while not self.ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready within {within}s: {self.output.read_text()}")
            time.sleep(0.05)
        return self

    def metric(self, name: str) -> float:
        """One sample of /metrics, by its name and labels as written there."""
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        raise AssertionError(f"{name} is not in /metrics")

    def kill(self) -> None:
        """SIGKILL: no drain, no lease released."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit code and everything the process wrote."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
        return code, self.output.read_text()
