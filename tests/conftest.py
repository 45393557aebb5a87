"""Shared fixtures: the emulator, gateways pointed at it, a real Redis server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import Settings
from gateway.emulator.app import create_emulator
from tests.support.gateway import (
    AWS_TEST_ENVIRONMENT,
    Gateway,
    GatewayFactory,
    InProcessGateway,
)
from tests.support.oidc import KeySetServer
from tests.support.servers import (
    Emulator,
    RedisServer,
    ServerThread,
    redis_url_from_environment,
)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    server = ServerThread(create_emulator(), lifespan="off").start()
    try:
        yield Emulator(server.url)
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in AWS_TEST_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    for name in list(os.environ):
        if name.startswith("PCS_GATEWAY_"):
            monkeypatch.delenv(name)


#: Where a test's gateways run: `@pytest.mark.gateway("in_process")` on a module or test.
GATEWAY_PLACES = ("uvicorn", "in_process")


@pytest.fixture
def start_gateway(
    request: pytest.FixtureRequest, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[GatewayFactory]:
    """Start gateways pointed at the emulator: on uvicorn, or in process where marked so."""
    marker = request.node.get_closest_marker("gateway")
    place = marker.args[0] if marker is not None else "uvicorn"
    if place not in GATEWAY_PLACES:
        raise pytest.UsageError(f"gateway marker: {place!r} is not one of {GATEWAY_PLACES}")
    emulator.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL_PCS", emulator.url)
    with ExitStack() as stack:

        def start(**settings: Any) -> Gateway:
            app = create_app(Settings(**settings))
            if place == "in_process":
                in_process = InProcessGateway(app)
                stack.callback(in_process.close)
                return in_process
            server = ServerThread(app).start()
            stack.callback(server.stop)
            return Gateway(server, app)

        yield start


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> Gateway:
    return start_gateway()


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The test Redis database, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server_url


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """A real Redis: REDIS_URL when it answers, else a redis-server started here."""
    found = redis_url_from_environment()
    if found is not None:
        yield found
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def jwks() -> Iterator[KeySetServer]:
    """A local OIDC key set server, for the modules that mint tokens."""
    server = KeySetServer()
    try:
        yield server
    finally:
        server.server.stop()
