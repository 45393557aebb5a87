"""Live status in one gateway: subscriptions over WebSocket and SSE, fed by one poll per cluster."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.app import create_app
from gateway.config import Settings
from tests.support.live import (
    CLUSTER_UPDATED,
    CLUSTERS_UPDATED,
    FAST,
    INTERVAL,
    GatewayProcess,
    LiveEmulator,
    SseClient,
    running_live_emulator,
    statuses,
    until,
    ws_client,
)
from tests.support.servers import ServerThread


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


def not_found(messages: list[dict[str, Any]]) -> list[tuple[list[str], str | None]]:
    """(path, resourceId) of each NOT_FOUND error in `next` payloads."""
    return [
        (error["path"], error["extensions"].get("resourceId"))
        for m in messages
        if m["type"] == "next"
        for error in m["payload"].get("errors", [])
        if error["extensions"]["code"] == "NOT_FOUND"
    ]


async def test_one_cluster_disappearing_leaves_the_others_of_clusters_updated_going(
    live_emulator: LiveEmulator, live_gateway: ServerThread
) -> None:
    async with ws_client(live_gateway.url) as client:
        ids = ["live-5", "live-6", "no-such-cluster"]
        await client.subscribe("b", CLUSTERS_UPDATED, {"ids": ids})
        assert await until(lambda: len(client.messages.get("b", [])) == 3, 10)
        assert {e["clustersUpdated"]["name"] for e in client.data("b")} == {"live-5", "live-6"}
        assert not_found(client.messages["b"]) == [(["clustersUpdated"], "no-such-cluster")]
        live_emulator.delete("live-5")
        assert await until(lambda: len(not_found(client.messages["b"])) == 2, INTERVAL + 2)
        assert not_found(client.messages["b"])[1] == (["clustersUpdated"], "live-5")
        gone = [m for m in client.messages["b"] if m["type"] == "next"][-1]
        assert gone["payload"]["data"] is None
        # The third cluster goes on: its change still arrives, and nothing has completed.
        live_emulator.set_status("live-6", "UPDATING")
        assert await until(lambda: len(client.data("b")) == 3, INTERVAL + 2)
        assert client.data("b")[-1]["clustersUpdated"] == {"name": "live-6", "status": "UPDATING"}
        assert "complete" not in client.kinds("b")
        # Once the last one goes, the subscription completes.
        live_emulator.delete("live-6")
        assert await until(lambda: "complete" in client.kinds("b"), INTERVAL + 2)
        assert not_found(client.messages["b"])[-1] == (["clustersUpdated"], "live-6")


async def test_clusters_updated_over_sse_reports_a_missing_cluster_and_goes_on(
    live_emulator: LiveEmulator, live_gateway: ServerThread
) -> None:
    async with httpx.AsyncClient(base_url=live_gateway.url, timeout=30) as http:
        sse = SseClient()
        ids = ["live-8", "no-such-cluster"]
        stream = asyncio.create_task(sse.run(http, CLUSTERS_UPDATED, {"ids": ids}))
        assert await until(lambda: len(sse.events) == 2, 10)
        live_emulator.set_status("live-8", "UPDATING")
        assert await until(lambda: len(sse.data()) == 3, INTERVAL + 2)
        stream.cancel()
    nexts = [payload for kind, payload in sse.events if kind == "next"]
    assert [e["extensions"]["code"] for p in nexts for e in p.get("errors", [])] == ["NOT_FOUND"]
    assert [d["clustersUpdated"]["status"] for d in sse.data() if d] == ["ACTIVE", "UPDATING"]
    assert ("complete", None) not in sse.events  # the stream went on


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
    settings = {
        "AWS_ENDPOINT_URL_PCS": live_emulator.url,
        "PCS_GATEWAY_CACHE_TTL_SETTLED_SECONDS": str(INTERVAL),
        "PCS_GATEWAY_DRAIN_SECONDS": "5",
        "PCS_GATEWAY_WEBSOCKETS": "true",
    }
    serve = GatewayProcess(tmp_path, settings)
    await asyncio.to_thread(serve.wait_ready)
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
        async with ws_client(url, {"x-api-key": "not-a-key"}):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(ConnectionClosed) as closed:
        async with ws_client(url):  # no credentials in the headers nor in connection_init
            pass
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
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


def error_codes(messages: list[dict[str, Any]]) -> list[str]:
    """The `extensions.code` of every error in `error` and `next` messages."""
    found = []
    for m in messages:
        payload = m.get("payload")
        errors = payload if isinstance(payload, list) else (payload or {}).get("errors", [])
        found += [e["extensions"]["code"] for e in errors]
    return found


async def test_a_connection_holds_at_most_its_limit_of_subscriptions(
    live_emulator: LiveEmulator,
) -> None:
    server = ServerThread(create_app(Settings(**FAST, live_max_subscriptions_per_connection=2)))
    server.start()
    try:
        async with ws_client(server.url) as client, ws_client(server.url) as other:
            for n in range(3):
                await client.subscribe(str(n), CLUSTER_UPDATED, {"id": "live-3"})
            assert await until(lambda: all(client.messages.get(str(n)) for n in range(3)), 10)
            assert [client.kinds(str(n))[0] for n in range(3)] == ["next", "next", "error"]
            (refused,) = client.messages["2"][0]["payload"]
            assert refused["extensions"] == {"code": "TOO_MANY_SUBSCRIPTIONS", "limit": 2}
            # The limit is the connection's: another one subscribes, and a place freed is taken.
            await other.subscribe("o", CLUSTER_UPDATED, {"id": "live-3"})
            assert await until(lambda: len(other.data("o")) == 1, 10)
            await client.socket.send(json.dumps({"id": "0", "type": "complete"}))
            await asyncio.sleep(0.2)
            await client.subscribe("3", CLUSTER_UPDATED, {"id": "live-3"})
            assert await until(lambda: len(client.data("3")) == 1, 10)
    finally:
        server.stop()


async def test_a_caller_holds_at_most_its_limit_over_all_its_connections(
    live_emulator: LiveEmulator,
) -> None:
    settings = Settings(
        **FAST, api_keys=f"{READER_KEY}, {ADMIN_KEY}", live_max_subscriptions_per_caller=2
    )
    server = ServerThread(create_app(settings)).start()
    key = {"x-api-key": READER_KEY}
    try:
        async with (
            ws_client(server.url, key) as first,
            ws_client(server.url, key) as second,
            httpx.AsyncClient(base_url=server.url, timeout=30) as http,
        ):
            await first.subscribe("a", CLUSTER_UPDATED, {"id": "live-4"})
            sse = SseClient()
            stream = asyncio.create_task(sse.run(http, CLUSTER_UPDATED, {"id": "live-4"}, key))
            assert await until(lambda: len(first.data("a")) == 1 and len(sse.data()) == 1, 10)
            # Third and fourth, on another WebSocket and over SSE: both refused.
            await second.subscribe("b", CLUSTER_UPDATED, {"id": "live-4"})
            refused_sse = SseClient()
            await asyncio.wait_for(
                refused_sse.run(http, CLUSTER_UPDATED, {"id": "live-4"}, key), 10
            )
            assert await until(lambda: "complete" in second.kinds("b"), 10)
            assert error_codes(second.messages["b"]) == ["TOO_MANY_SUBSCRIPTIONS"]
            sse_codes = [
                e["extensions"]["code"]
                for kind, p in refused_sse.events
                if kind == "next"
                for e in p.get("errors", [])
            ]
            assert sse_codes == ["TOO_MANY_SUBSCRIPTIONS"]
            # Another caller is not counted with this one.
            async with ws_client(server.url, {"x-api-key": ADMIN_KEY}) as admin:
                await admin.subscribe("c", CLUSTER_UPDATED, {"id": "live-4"})
                assert await until(lambda: len(admin.data("c")) == 1, 10)
            # One of the caller's ends: its place is free again.
            stream.cancel()
            await asyncio.sleep(0.3)
            await second.subscribe("d", CLUSTER_UPDATED, {"id": "live-4"})
            assert await until(lambda: len(second.data("d")) == 1, 10)
    finally:
        server.stop()


@pytest.mark.slow
async def test_a_websocket_that_stops_reading_is_disconnected_and_its_poll_stops(
    live_emulator: LiveEmulator, tmp_path: Path
) -> None:
    settings = {
        "AWS_ENDPOINT_URL_PCS": live_emulator.url,
        "PCS_GATEWAY_CACHE_TTL_SETTLED_SECONDS": str(INTERVAL),
        "PCS_GATEWAY_CACHE_TTL_TRANSITIONAL_SECONDS": str(INTERVAL),
        "PCS_GATEWAY_LIVE_KEEPALIVE_SECONDS": "1",
        "PCS_GATEWAY_WEBSOCKETS": "true",
        "PCS_GATEWAY_RATE_LIMIT": "off",
    }
    serve = GatewayProcess(tmp_path, settings)
    try:
        await asyncio.to_thread(serve.wait_ready)

        def gauges() -> tuple[float, float, float]:
            return (
                serve.metric('pcsgw_live_connections{transport="websocket"}'),
                serve.metric("pcsgw_live_subscriptions"),
                serve.metric("pcsgw_live_pollers"),
            )

        async with ws_client(serve.url) as client:
            for n in range(3):
                await client.subscribe(str(n), CLUSTER_UPDATED, {"id": "live-6"})
            assert await until(lambda: all(len(client.data(str(n))) == 1 for n in range(3)), 20)
            assert await asyncio.to_thread(gauges) == (1.0, 3.0, 1.0)
            # A frozen tab: nothing more is read, so no ping is answered and events pile up.
            client.reader.cancel()
            client.socket.transport.pause_reading()
            live_emulator.set_status("live-6", "UPDATING")

            async def gone() -> bool:
                return await asyncio.to_thread(gauges) == (0.0, 0.0, 0.0)

            deadline = time.monotonic() + 2 * 1.0 + 3 * INTERVAL + 5
            while not await gone():
                assert time.monotonic() < deadline, await asyncio.to_thread(gauges)
                await asyncio.sleep(0.2)
        code, output = await asyncio.to_thread(serve.stop)
        assert code == 0
        assert "websocket connection ended" in output
    finally:
        await asyncio.to_thread(serve.stop)
