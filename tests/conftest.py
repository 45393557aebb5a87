"""Shared fixtures: the emulator, gateways pointed at it, a real Redis server."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config import Settings
from gateway.emulator.app import create_emulator
from tests.servers import Emulator, RedisServer, ServerThread, redis_url_from_environment

# The emulator checks that requests are signed; any key but the refused ones will do.
AWS_TEST_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "AKIDTESTGATEWAY",
    "AWS_SECRET_ACCESS_KEY": "test-secret-value-9f8e7d",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


# What must never reach a client: a stack trace, a Python file or module path, the secret.
_LEAKS = re.compile(
    r"Traceback|\w\.py\b|\bgateway\.[a-z_]+|\b(?:botocore|aiobotocore|aiohttp|strawberry)\b|"
    + re.escape(AWS_TEST_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"])
)


def assert_no_leaks(answer: Any) -> None:
    """Fail when an answer carries a stack trace, a file or module path, or the AWS secret."""
    text = json.dumps(answer)
    found = _LEAKS.search(text)
    assert found is None, f"an answer leaks {found.group()!r}: {text[:500]}"


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


class Gateway:
    """A running gateway: its URL, an HTTP client, and a GraphQL helper."""

    def __init__(self, server: ServerThread, app: Any) -> None:
        self.url = server.url
        self.app = app
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def query(self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        response = self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, **kwargs
        )
        answer = response.json()
        # Every answer any test reads through here is checked for leaks.
        assert_no_leaks(answer)
        return answer

    @property
    def stats(self) -> Any:
        return self.app.state.gateway.stats


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def start_gateway(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatewayFactory]:
    """Start gateways pointed at the emulator through AWS_ENDPOINT_URL_PCS."""
    emulator.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL_PCS", emulator.url)
    with ExitStack() as stack:

        def start(**settings: Any) -> Gateway:
            app = create_app(Settings(**settings))
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
