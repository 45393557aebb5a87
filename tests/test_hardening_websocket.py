"""GraphQL over WebSocket: each operation on a connection is scoped as an HTTP request is.

A real client speaking graphql-transport-ws to a gateway on loopback, the real PCS client
and the emulator behind it.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from gateway.emulator.seed import minimal
from tests.support.gateway import Gateway, GatewayFactory
from tests.support.oidc import KeySetServer, bearer, mint, oidc_settings
from tests.support.servers import Emulator

KEY = "reader-key-0123456789abcdef"
STATUS = 'query { cluster(identifier: "demo-active") { name status } }'
REFRESH = 'query { cluster(identifier: "demo-active", refresh: true) { name } }'


class Session:
    """One graphql-transport-ws connection: operations one at a time, answers read back."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.ids = itertools.count(1)

    def run(self, query: str) -> list[dict[str, Any]]:
        """The messages of one operation, up to its `complete` or `error`."""
        operation = str(next(self.ids))
        self.socket.send(
            json.dumps({"id": operation, "type": "subscribe", "payload": {"query": query}})
        )
        messages = []
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") != operation:
                continue
            messages.append(message)
            if message["type"] in ("complete", "error"):
                return messages

    def answer(self, query: str) -> dict[str, Any]:
        """The payload of one operation's `next` message, or its `error` payload."""
        for message in self.run(query):
            if message["type"] == "next":
                payload: dict[str, Any] = message["payload"]
                return payload
            if message["type"] == "error":
                return {"errors": message["payload"]}
        raise AssertionError("no answer")


@contextmanager
def session(gateway: Gateway, headers: dict[str, str] | None = None) -> Iterator[Session]:
    url = gateway.url.replace("http://", "ws://") + "/graphql"
    with connect(
        url,
        subprotocols=["graphql-transport-ws"],
        additional_headers=headers or {},  # type: ignore[list-item]
    ) as socket:
        socket.send(json.dumps({"type": "connection_init"}))
        assert json.loads(socket.recv(timeout=10))["type"] == "connection_ack"
        yield Session(socket)


def codes(payload: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in payload.get("errors", [])]


def test_websockets_are_off_unless_configured(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway()
    with pytest.raises(InvalidStatus) as refused, session(gateway):
        pass
    assert refused.value.response.status_code == 403
    on = start_gateway(websockets=True)
    with session(on) as ws:
        assert ws.answer(STATUS)["data"] == {"cluster": {"name": "demo-active", "status": "ACTIVE"}}


def test_each_operation_spends_the_callers_rate_limit(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    gateway = start_gateway(websockets=True, api_keys=KEY, rate_limit="5/minute")
    with session(gateway, {"x-api-key": KEY}) as ws:
        answers = [ws.answer(REFRESH) for _ in range(10)]
    passed = [answer for answer in answers if "data" in answer and not answer.get("errors")]
    refused = [answer for answer in answers if codes(answer) == ["THROTTLED"]]
    assert len(passed) + len(refused) == 10
    # The handshake spent one of the five; every operation after the budget is refused.
    assert 1 <= len(passed) <= 4
    assert refused[0]["errors"][0]["extensions"]["retryAfterSeconds"] >= 1
    assert emulator.calls() == len(passed)


def test_each_operation_has_its_own_loader_and_deadline(
    start_gateway: GatewayFactory, emulator: Emulator
) -> None:
    emulator.put_cluster(minimal("short-lived"))
    gateway = start_gateway(
        websockets=True,
        request_deadline_seconds=1,
        cache_ttl_settled_seconds=0.3,
        cache_negative_ttl_seconds=0.3,
    )
    query = 'query { cluster(identifier: "short-lived") { name status } }'
    with session(gateway) as ws:
        assert ws.answer(query)["data"] == {"cluster": {"name": "short-lived", "status": "ACTIVE"}}
        emulator.delete_cluster("short-lived")
        # Past the connection's first deadline and past the cluster's freshness.
        time.sleep(1.3)
        gone = ws.answer(query)
        assert gone["data"] == {"cluster": None}
        assert codes(gone) == ["NOT_FOUND"]
        assert ws.answer(STATUS)["data"] == {"cluster": {"name": "demo-active", "status": "ACTIVE"}}


def test_errors_over_a_websocket_follow_the_error_contract(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(websockets=True, max_depth=3)
    with session(gateway) as ws:
        missing = ws.answer('query { cluster(identifier: "error-not-found") { name } }')
        assert missing["data"] == {"cluster": None}
        assert codes(missing) == ["NOT_FOUND"]
        invalid = ws.answer("query { cluster(identifier: 1) { name } }")
        assert codes(invalid) == ["GRAPHQL_VALIDATION_FAILED"]
        broken = ws.answer("query { cluster(")
        assert codes(broken) == ["GRAPHQL_PARSE_FAILED"]
        deep = ws.answer(
            'query { cluster(identifier: "demo-full") { slurmConfiguration { jwtAuth '
            "{ jwtKey { secretArn } } } } }"
        )
        assert codes(deep) == ["GRAPHQL_VALIDATION_FAILED"]
        # The connection lives on after all of these.
        assert ws.answer(STATUS)["data"]["cluster"]["status"] == "ACTIVE"


def test_an_expired_token_ends_the_connection_with_a_reason(
    start_gateway: GatewayFactory,
    jwks: KeySetServer,
) -> None:
    key = jwks.new_key("k-websocket")
    jwks.publish(key)
    gateway = start_gateway(websockets=True, **oidc_settings(jwks, oidc_leeway_seconds=0))
    token = mint(key, exp=int(time.time()) + 2, scope="pcs-gateway:secrets")
    secrets = (
        'query { cluster(identifier: "demo-full") '
        "{ slurmConfiguration { authKey { secretArn } } } }"
    )
    with session(gateway, bearer(token)) as ws:
        first = ws.answer(secrets)
        assert first["data"]["cluster"]["slurmConfiguration"]["authKey"]["secretArn"]
        time.sleep(3.2)
        with pytest.raises(ConnectionClosed) as closed:
            ws.run(secrets)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
    assert "expired" in closed.value.rcvd.reason
