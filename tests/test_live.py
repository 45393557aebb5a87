"""Live status in one gateway: subscriptions over WebSocket and SSE, fed by one poll per cluster."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from gateway.app import create_app
from gateway.config import Settings
from gateway.emulator import seed
from gateway.emulator.app import create_emulator
from tests.conftest import assert_no_leaks
from tests.servers import ServerThread

CLUSTER_UPDATED = """
subscription Watch($id: String!) {
  clusterUpdated(identifier: $id) { name status modifiedAt freshness { ageSeconds } }
}
"""
CLUSTERS_UPDATED = """
subscription Watch($ids: [String!]!) { clustersUpdated(identifiers: $ids) { name status } }
"""
#: Poll interval of the tests: the cache TTLs, which the intervals default to.
INTERVAL = 1.0
FAST = {
    "cache_ttl_settled_seconds": INTERVAL,
    "cache_ttl_transitional_seconds": INTERVAL,
    "websockets": True,
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


@pytest.fixture
def live_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveEmulator]:
    with running_live_emulator(monkeypatch) as emulator:
        yield emulator


@pytest.fixture
def live_gateway(live_emulator: LiveEmulator) -> Iterator[ServerThread]:
    server = ServerThread(create_app(Settings(**FAST))).start()
    try:
        yield server
    finally:
        server.stop()


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
    ) -> None:
        headers = {"accept": "text/event-stream", **(headers or {})}
        body = {"query": query, "variables": variables}
        try:
            async with http.stream("POST", "/graphql", json=body, headers=headers) as response:
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


@pytest.mark.slow
async def test_status_flip_reaches_every_subscriber_once(
    live_emulator: LiveEmulator, live_gateway: ServerThread
) -> None:
    async with (
        ws_client(live_gateway.url) as first,
        ws_client(live_gateway.url) as second,
        httpx.AsyncClient(base_url=live_gateway.url, timeout=30) as http,
    ):
        for n in range(5):
            await first.subscribe(str(n), CLUSTER_UPDATED, {"id": "live-0"})
            await second.subscribe(str(n), CLUSTER_UPDATED, {"id": "live-0"})
        sse = [SseClient() for _ in range(3)]
        streams = [asyncio.create_task(c.run(http, CLUSTER_UPDATED, {"id": "live-0"})) for c in sse]
        everyone = [(first, str(n)) for n in range(5)] + [(second, str(n)) for n in range(5)]

        def counts() -> list[int]:
            return [len(c.data(i)) for c, i in everyone] + [len(c.data()) for c in sse]

        assert await until(lambda: all(n == 1 for n in counts()), 10)
        assert statuses(first.data("0")) == ["ACTIVE"]

        live_emulator.set_status("live-0", "UPDATING")
        flipped = time.monotonic()
        assert await until(lambda: all(n == 2 for n in counts()), INTERVAL + 1.0)
        assert time.monotonic() - flipped <= INTERVAL + 1.0
        # Polls go on, the value does not change: no further event, no duplicate.
        await asyncio.sleep(2.5 * INTERVAL)
        assert counts() == [2] * len(counts())
        for client, op_id in everyone:
            assert statuses(client.data(op_id)) == ["ACTIVE", "UPDATING"]
        for client in sse:
            assert statuses(client.data()) == ["ACTIVE", "UPDATING"]
        for stream in streams:
            stream.cancel()


@pytest.mark.slow
async def test_one_poll_per_cluster_per_interval_however_many_subscribe(
    live_emulator: LiveEmulator, live_gateway: ServerThread
) -> None:
    names = [f"live-{n}" for n in range(10)]
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(ws_client(live_gateway.url)) for _ in range(10)]
        for client in clients:
            for n in range(100):
                await client.subscribe(str(n), CLUSTER_UPDATED, {"id": names[n % 10]})

        def first_events() -> int:
            return sum(len(c.data(str(n))) for c in clients for n in range(100))

        assert await until(lambda: first_events() == 1000, 20)
        started = time.time()
        await asyncio.sleep(4 * INTERVAL)
        calls = live_emulator.get_cluster_calls(since=started)
    per_cluster = dict.fromkeys(names, 0)
    for call in calls:
        per_cluster[call["identifier"]] += 1
    # Four intervals: at most one poll per cluster each, one more at the edges.
    assert max(per_cluster.values()) <= 5, per_cluster
    assert min(per_cluster.values()) >= 3, per_cluster


async def test_cluster_that_disappears_ends_with_not_found(
    live_emulator: LiveEmulator, live_gateway: ServerThread
) -> None:
    async with ws_client(live_gateway.url) as client:
        await client.subscribe("gone", CLUSTER_UPDATED, {"id": "live-3"})
        assert await until(lambda: len(client.data("gone")) == 1, 10)
        live_emulator.delete("live-3")
        assert await until(lambda: "complete" in client.kinds("gone"), INTERVAL + 2)
        error = next(
            m
            for m in client.messages["gone"]
            if m["type"] in ("error", "next") and m["payload"].get("errors")
        )
        assert error["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert client.kinds("gone")[-1] == "complete"


async def test_a_failed_poll_sends_nothing_and_the_subscription_goes_on(
    live_emulator: LiveEmulator, live_gateway: ServerThread
) -> None:
    async with ws_client(live_gateway.url) as client:
        await client.subscribe("s", CLUSTER_UPDATED, {"id": "live-4"})
        assert await until(lambda: len(client.data("s")) == 1, 10)
        plan = {"operations": {"GetCluster": {"error": "InternalServerException"}}}
        live_emulator.faults(plan)
        await asyncio.sleep(2.5 * INTERVAL)
        assert client.kinds("s") == ["next"]
        live_emulator.faults(None)
        live_emulator.set_status("live-4", "UPDATING")
        assert await until(lambda: len(client.data("s")) == 2, 2 * INTERVAL + 3)
        assert statuses(client.data("s")) == ["ACTIVE", "UPDATING"]


async def test_clusters_updated_sends_each_cluster_then_each_change(
    live_emulator: LiveEmulator, live_gateway: ServerThread
) -> None:
    async with ws_client(live_gateway.url) as client:
        await client.subscribe("b", CLUSTERS_UPDATED, {"ids": ["live-5", "live-6", "live-5"]})
        assert await until(lambda: len(client.data("b")) == 2, 10)
        first = {e["clustersUpdated"]["name"] for e in client.data("b")}
        assert first == {"live-5", "live-6"}
        live_emulator.set_status("live-6", "DELETING")
        assert await until(lambda: len(client.data("b")) == 3, INTERVAL + 2)
        assert client.data("b")[-1]["clustersUpdated"] == {"name": "live-6", "status": "DELETING"}


async def test_subscription_limits_are_errors_with_codes(
    live_emulator: LiveEmulator, live_emulator_gateway_limits: ServerThread
) -> None:
    url = live_emulator_gateway_limits.url
    async with ws_client(url) as client:
        await client.subscribe("big", CLUSTERS_UPDATED, {"ids": ["live-1", "live-2", "live-3"]})
        await client.subscribe("bad", CLUSTER_UPDATED, {"id": "not a name!"})
        for n in range(3):
            await client.subscribe(f"s{n}", CLUSTER_UPDATED, {"id": "live-1"})
        assert await until(lambda: "complete" in client.kinds("big"), 10)
        assert await until(
            lambda: "complete" in client.kinds("bad") or "error" in client.kinds("bad"), 10
        )
        assert await until(lambda: sum(len(client.kinds(f"s{n}")) for n in range(3)) >= 3, 10)

        def codes(op_id: str) -> list[str]:
            found = []
            for m in client.messages.get(op_id, []):
                payload = m.get("payload")
                errors = payload if isinstance(payload, list) else (payload or {}).get("errors", [])
                found += [e["extensions"]["code"] for e in errors]
            return found

        assert codes("big") == ["BAD_USER_INPUT"]
        assert codes("bad") == ["BAD_USER_INPUT"]
        # Two subscriptions a caller: the third is refused.
        refused = [n for n in range(3) if "TOO_MANY_SUBSCRIPTIONS" in codes(f"s{n}")]
        assert len(refused) == 1


@pytest.fixture
def live_emulator_gateway_limits(live_emulator: LiveEmulator) -> Iterator[ServerThread]:
    settings = Settings(**FAST, max_batch_size=2, live_max_subscriptions_per_caller=2)
    server = ServerThread(create_app(settings)).start()
    try:
        yield server
    finally:
        server.stop()


async def test_metrics_count_connections_subscriptions_pollers_and_events(
    live_emulator: LiveEmulator, live_gateway: ServerThread
) -> None:
    async with ws_client(live_gateway.url) as client:
        await client.subscribe("1", CLUSTER_UPDATED, {"id": "live-7"})
        await client.subscribe("2", CLUSTER_UPDATED, {"id": "live-7"})
        assert await until(lambda: len(client.data("1")) + len(client.data("2")) == 2, 10)
        async with httpx.AsyncClient(base_url=live_gateway.url) as http:
            text = (await http.get("/metrics")).text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("pcsgw_live"))
    assert lines['pcsgw_live_connections{transport="websocket"}'] == "1.0"
    assert lines["pcsgw_live_subscriptions"] == "2.0"
    assert lines["pcsgw_live_pollers"] == "1.0"
    assert float(lines["pcsgw_live_events_total"]) == 2.0


@pytest.mark.slow
async def test_sigterm_completes_subscriptions_closes_sockets_and_exits_0(
    live_emulator: LiveEmulator, tmp_path: Path
) -> None:
    from tests.test_server import ServeProcess

    settings = {
        "AWS_ENDPOINT_URL_PCS": live_emulator.url,
        "PCS_GATEWAY_CACHE_TTL_SETTLED_SECONDS": str(INTERVAL),
        "PCS_GATEWAY_DRAIN_SECONDS": "5",
        "PCS_GATEWAY_WEBSOCKETS": "true",
    }
    serve = await asyncio.to_thread(ServeProcess, tmp_path, settings)
    try:
        async with (
            ws_client(serve.url) as client,
            httpx.AsyncClient(base_url=serve.url, timeout=30) as http,
        ):
            await client.subscribe("a", CLUSTER_UPDATED, {"id": "live-0"})
            await client.subscribe("b", CLUSTERS_UPDATED, {"ids": ["live-1", "live-2"]})
            sse = SseClient()
            stream = asyncio.create_task(sse.run(http, CLUSTER_UPDATED, {"id": "live-0"}))
            assert await until(
                lambda: (
                    len(client.data("a")) == 1
                    and len(client.data("b")) == 2
                    and len(sse.data()) == 1
                ),
                20,
            )
            code, output = await asyncio.to_thread(serve.stop)
            assert await until(client.closed.is_set, 10)
            await asyncio.wait_for(stream, 10)
        assert code == 0, output
        assert client.kinds("a")[-1] == "complete"
        assert client.kinds("b")[-1] == "complete"
        assert client.socket.close_code == 1001
        assert sse.events[-1] == ("complete", None)
        assert "websocket connection ended" in output
    finally:
        await asyncio.to_thread(serve.stop)


READER_KEY = "live-reader-key-5b2c9e0f7d1a"
ADMIN_KEY = "live-admin-key-8e3f1a6c4b9d"
SECRETS = """
subscription Secrets($id: String!) {
  clusterUpdated(identifier: $id) { name slurmConfiguration { authKey { secretArn } } }
}
"""


@pytest.fixture
def guarded_gateway(live_emulator: LiveEmulator) -> Iterator[ServerThread]:
    settings = Settings(
        **FAST,
        api_keys=f"{READER_KEY}, {ADMIN_KEY}:pcs-gateway:secrets",
        cors_allow_origins="https://portal.example.com",
    )
    server = ServerThread(create_app(settings)).start()
    try:
        yield server
    finally:
        server.stop()


async def test_subscriptions_authenticate_as_queries_and_guard_secret_references(
    guarded_gateway: ServerThread,
) -> None:
    url = guarded_gateway.url
    with pytest.raises(InvalidStatus) as refused:
        async with ws_client(url):
            pass
    assert refused.value.response.status_code == 403
    async with ws_client(url, {"x-api-key": READER_KEY}) as reader:
        await reader.subscribe("r", SECRETS, {"id": "live-0"})
        assert await until(lambda: len(reader.messages.get("r", [])) == 1, 10)
    (event,) = reader.messages["r"]
    assert event["payload"]["data"]["clusterUpdated"]["slurmConfiguration"]["authKey"] is None
    assert event["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        anonymous = await http.post(
            "/graphql",
            json={"query": SECRETS, "variables": {"id": "live-0"}},
            headers={"accept": "text/event-stream"},
        )
        assert anonymous.status_code == 401
        admin = SseClient()
        stream = asyncio.create_task(
            admin.run(http, SECRETS, {"id": "live-0"}, {"x-api-key": ADMIN_KEY})
        )
        assert await until(lambda: len(admin.data()) == 1, 10)
        stream.cancel()
    auth_key = admin.data()[0]["clusterUpdated"]["slurmConfiguration"]["authKey"]
    assert auth_key["secretArn"].startswith("arn:aws:secretsmanager:")


async def test_websocket_upgrades_from_other_origins_are_refused(
    guarded_gateway: ServerThread,
) -> None:
    key = {"x-api-key": READER_KEY}
    with pytest.raises(InvalidStatus) as refused:
        async with ws_client(guarded_gateway.url, {**key, "origin": "https://evil.example"}):
            pass
    assert refused.value.response.status_code == 403
    portal = {**key, "origin": "https://portal.example.com"}
    async with ws_client(guarded_gateway.url, portal) as client:
        await client.subscribe("p", CLUSTER_UPDATED, {"id": "live-0"})
        assert await until(lambda: len(client.data("p")) == 1, 10)
