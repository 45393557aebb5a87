"""Credentials in graphql-transport-ws's `connection_init` payload, as browsers must send them.

A browser cannot set headers on a WebSocket upgrade: the handshake is accepted without them
and the payload's `authorization` or `x-api-key` makes the caller, through the same checks
as HTTP headers. Real clients (`websockets`, and graphql-ws from npm) on loopback.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.app import create_app
from gateway.config import Settings
from tests.support.live import (
    CLIENTS,
    CLUSTER_UPDATED,
    FAST,
    LiveEmulator,
    node_clients,
    running_live_emulator,
    until,
    ws_client,
)
from tests.support.oidc import KeySetServer, mint, oidc_settings
from tests.support.servers import ServerThread

READER_KEY = "init-reader-key-3f9a1c7e5b2d"
ADMIN_KEY = "init-admin-key-6d2b8e4a0c9f"
SECRETS = """
subscription Secrets($id: String!) {
  clusterUpdated(identifier: $id) { name slurmConfiguration { authKey { secretArn } } }
}
"""
__all__ = ["node_clients"]  # the fixture, imported


@pytest.fixture
def live_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveEmulator]:
    with running_live_emulator(monkeypatch) as emulator:
        yield emulator


@pytest.fixture
def signing(jwks: KeySetServer) -> Any:
    key = jwks.new_key("k-init")
    jwks.publish(key)
    return key


def gateway(**settings: Any) -> ServerThread:
    return ServerThread(create_app(Settings(**{**FAST, **settings}))).start()


@pytest.fixture
def keyed(live_emulator: LiveEmulator) -> Iterator[ServerThread]:
    server = gateway(api_keys=f"{READER_KEY}, {ADMIN_KEY}:pcs-gateway:secrets")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tokens(live_emulator: LiveEmulator, jwks: KeySetServer) -> Iterator[ServerThread]:
    server = gateway(**oidc_settings(jwks, oidc_leeway_seconds=0))
    try:
        yield server
    finally:
        server.stop()


async def refusal(url: str, payload: object) -> tuple[int, str]:
    """The close code and reason a connection_init with `payload` gets, headers carrying none."""
    address = url.replace("http://", "ws://") + "/graphql"
    async with connect(address, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def first_event(url: str, init: dict[str, Any]) -> dict[str, Any]:
    """The first `next` payload of the secrets subscription on a connection made with `init`."""
    async with ws_client(url, **init) as client:
        await client.subscribe("s", SECRETS, {"id": "live-0"})
        assert await until(lambda: len(client.messages.get("s", [])) >= 1, 10)
    payload: dict[str, Any] = client.messages["s"][0]["payload"]
    return payload


def auth_key(payload: dict[str, Any]) -> Any:
    return payload["data"]["clusterUpdated"]["slurmConfiguration"]["authKey"]


async def test_an_api_key_in_the_init_payload_makes_the_caller(keyed: ServerThread) -> None:
    reader = await first_event(keyed.url, {"x-api-key": READER_KEY})
    assert auth_key(reader) is None
    assert [e["extensions"]["code"] for e in reader["errors"]] == ["FORBIDDEN"]
    # Any case, at the top level or under `headers`, as graphql-ws users pass connectionParams.
    for init in ({"X-API-Key": ADMIN_KEY}, {"headers": {"X-Api-Key": ADMIN_KEY}}):
        admin = await first_event(keyed.url, init)
        assert "errors" not in admin
        assert auth_key(admin)["secretArn"].startswith("arn:aws:secretsmanager:")


async def test_an_init_payload_without_valid_credentials_closes_with_4401(
    keyed: ServerThread,
) -> None:
    code, reason = await refusal(keyed.url, {})
    assert (code, reason) == (
        4401,
        "Credentials are required: an API key in X-API-Key or a bearer token in Authorization.",
    )
    code, reason = await refusal(keyed.url, {"x-api-key": "not-a-key"})
    assert (code, reason) == (4401, "The API key is not valid.")
    code, _ = await refusal(keyed.url, {"x-api-key": 12345})
    assert code == 4401
    # A page of another origin is refused at the handshake, credentials or not.
    with pytest.raises(InvalidStatus) as foreign:
        async with ws_client(
            keyed.url, {"origin": "https://evil.example"}, **{"x-api-key": ADMIN_KEY}
        ):
            pass
    assert foreign.value.response.status_code == 403
    # A bad key in the upgrade's headers is refused at the handshake, as before.
    with pytest.raises(InvalidStatus) as refused:
        async with ws_client(keyed.url, {"x-api-key": "not-a-key"}):
            pass
    assert refused.value.response.status_code == 403


async def test_a_subscribe_before_connection_init_is_refused(keyed: ServerThread) -> None:
    address = keyed.url.replace("http://", "ws://") + "/graphql"
    async with connect(address, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        subscribe = {"query": CLUSTER_UPDATED, "variables": {"id": "live-0"}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_a_token_in_the_init_payload_sees_what_its_scopes_allow(
    tokens: ServerThread, signing: Any
) -> None:
    admin_token = mint(signing, scope="openid pcs-gateway:secrets")
    reader_token = mint(signing, sub="bob", scope="openid")
    admin = await first_event(tokens.url, {"Authorization": f"Bearer {admin_token}"})
    assert auth_key(admin)["secretArn"].startswith("arn:aws:secretsmanager:")
    nested = {"headers": {"authorization": f"Bearer {reader_token}"}}
    reader = await first_event(tokens.url, nested)
    assert auth_key(reader) is None
    assert [e["extensions"]["code"] for e in reader["errors"]] == ["FORBIDDEN"]
    expired = mint(signing, exp=int(time.time()) - 5)
    code, reason = await refusal(tokens.url, {"authorization": f"Bearer {expired}"})
    assert (code, reason) == (4401, "The bearer token has expired.")
    code, reason = await refusal(tokens.url, {"authorization": "Bearer not.a.token"})
    assert (code, reason) == (4401, "The bearer token is not valid.")


@pytest.mark.slow
async def test_a_token_from_the_init_payload_ends_its_subscription_when_it_expires(
    tokens: ServerThread, signing: Any
) -> None:
    token = mint(signing, exp=int(time.time()) + 2)
    async with ws_client(tokens.url, authorization=f"Bearer {token}") as client:
        await client.subscribe("e", CLUSTER_UPDATED, {"id": "live-1"})
        assert await until(lambda: len(client.data("e")) == 1, 10)
        assert await until(lambda: "complete" in client.kinds("e"), 5)
    ended = [m for m in client.messages["e"] if m["type"] == "next" and "errors" in m["payload"]]
    assert [e["extensions"]["code"] for e in ended[0]["payload"]["errors"]] == ["UNAUTHENTICATED"]
    assert "expired" in ended[0]["payload"]["errors"][0]["message"]
    assert client.kinds("e")[-1] == "complete"


async def test_the_callers_rate_limit_applies_to_init_payload_callers(
    live_emulator: LiveEmulator,
) -> None:
    server = gateway(api_keys=READER_KEY, rate_limit="2/minute")
    try:
        async with ws_client(server.url, **{"x-api-key": READER_KEY}) as client:
            for n in range(3):
                await client.subscribe(str(n), CLUSTER_UPDATED, {"id": "live-2"})
            assert await until(lambda: all(client.messages.get(str(n)) for n in range(3)), 10)
    finally:
        server.stop()
    kinds = [client.messages[str(n)][0]["type"] for n in range(3)]
    assert kinds == ["next", "next", "error"]
    (throttled,) = client.messages["2"][0]["payload"]
    assert throttled["extensions"]["code"] == "THROTTLED"


def run_node(url: str, params: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["node", "subscribe.mjs", "ws", url, "live-0", "1", json.dumps(params)],
        cwd=CLIENTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def node_events(client: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, err = client.communicate(timeout=30)
    assert client.returncode == 0, (out, err)
    return [json.loads(line) for line in out.splitlines() if line]


@pytest.mark.slow
def test_graphql_ws_sends_an_api_key_or_a_token_as_connection_params(
    node_clients: Path, live_emulator: LiveEmulator, jwks: KeySetServer, signing: Any
) -> None:
    server = gateway(api_keys=READER_KEY, **oidc_settings(jwks))
    try:
        with_key = node_events(run_node(server.url, {"X-API-Key": READER_KEY}))
        token = mint(signing, scope="openid")
        with_token = node_events(run_node(server.url, {"Authorization": f"Bearer {token}"}))
        refused = run_node(server.url, {"X-API-Key": "not-a-key"})
        out, _ = refused.communicate(timeout=30)
    finally:
        server.stop()
    for events in (with_key, with_token):
        assert [e["data"]["clusterUpdated"]["status"] for e in events] == ["ACTIVE"]
    assert refused.returncode == 1
    assert "4401" in out and "The API key is not valid." in out


async def test_a_socket_that_never_sends_connection_init_closes_after_the_header_timeout(
    live_emulator: LiveEmulator,
) -> None:
    server = gateway(api_keys=READER_KEY, header_timeout_seconds=1)
    try:
        address = server.url.replace("http://", "ws://") + "/graphql"
        async with connect(address, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
            waited = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
            assert time.monotonic() - waited >= 0.9
    finally:
        server.stop()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4408
