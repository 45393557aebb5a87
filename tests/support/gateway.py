"""The gateway under test: a running server, its HTTP client, and what no answer may carry."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.in_process import AppThread, AppTransport
from tests.support.servers import ServerThread

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


class Gateway:
    """A running gateway: its URL, an HTTP client, and a GraphQL helper."""

    def __init__(self, server: ServerThread, app: Any) -> None:
        self.url = server.url
        self.app = app
        self.http: httpx.Client = httpx.Client(base_url=server.url, timeout=30)

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


class InProcessGateway(Gateway):
    """The same gateway app called in this process, no socket: for behaviour that is the app's.

    The app's lifespan runs on start and its shutdown on close. Behaviour that lives in the
    server (timeouts, draining, client addresses, websockets, workers) belongs on a real
    uvicorn through `Gateway`.
    """

    def __init__(self, app: Any) -> None:
        self.url = "http://gateway.test"
        self.app = app
        self.app_thread = AppThread(app).start()
        self.http = httpx.Client(
            transport=AppTransport(self.app_thread), base_url=self.url, timeout=30
        )

    def close(self) -> None:
        self.http.close()
        self.app_thread.stop()


GatewayFactory = Callable[..., Gateway]
