"""The reference subscription clients from npm, graphql-ws and graphql-sse, against the gateway."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.config import Settings
from tests.support.live import FAST, LiveEmulator, node_clients, running_live_emulator
from tests.support.servers import ServerThread

pytestmark = [pytest.mark.slow]

__all__ = ["node_clients"]  # the fixture, imported


@pytest.fixture
def live_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveEmulator]:
    with running_live_emulator(monkeypatch) as emulator:
        yield emulator


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_reference_client_receives_the_cluster_then_its_change(
    node_clients: Path, live_emulator: LiveEmulator, transport: str
) -> None:
    server = ServerThread(create_app(Settings(**FAST))).start()
    client = subprocess.Popen(
        ["node", "subscribe.mjs", transport, server.url, "live-0", "2"],
        cwd=node_clients,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None
        first = json.loads(client.stdout.readline())
        assert first["data"]["clusterUpdated"]["status"] == "ACTIVE"
        live_emulator.set_status("live-0", "UPDATING")
        rest, errors = client.communicate(timeout=20)
        assert client.returncode == 0, errors
        events = [json.loads(line) for line in rest.splitlines() if line]
        assert [e["data"]["clusterUpdated"]["status"] for e in events] == ["UPDATING"]
    finally:
        if client.poll() is None:
            client.kill()
        server.stop()
