"""`pcs-gateway serve` as a process of its own, for tests of what only a real server does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.gateway import AWS_TEST_ENVIRONMENT
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_until(condition: Any, seconds: float, what: str) -> Any:
    """What `condition` returns once it is true; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds}s: {what}")


def readyz(url: str) -> httpx.Response | None:
    """The readiness answer, or None while nothing listens."""
    try:
        return httpx.get(f"{url}/readyz", timeout=5)
    except httpx.TransportError:
        return None


class ServeProcess:
    """`pcs-gateway serve` in a process of its own, its output in a file."""

    def __init__(self, tmp_path: Path, settings: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = tmp_path / f"serve-{self.port}.log"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PCS_GATEWAY_")},
            **AWS_TEST_ENVIRONMENT,
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
        wait_until(lambda: (r := readyz(self.url)) is not None and r.status_code == 200, 60, "up")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=15)

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
