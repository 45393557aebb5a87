"""Real servers for the tests: uvicorn on free loopback ports, a redis-server, the emulator."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerThread:
    """A uvicorn server for an ASGI app, in a thread with its own event loop."""

    def __init__(self, app: Any, *, port: int | None = None, lifespan: str = "on") -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan=lifespan,
            timeout_graceful_shutdown=2,
            # As `serve` runs it: X-Forwarded-For is the gateway's to judge (trusted proxies).
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self.server.serve())
        except BaseException as exc:
            self.error = exc
        finally:
            self.loop.close()

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.error!r}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@contextmanager
def serving(app: Any, **kwargs: Any) -> Iterator[ServerThread]:
    server = ServerThread(app, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


class Emulator:
    """The emulator over HTTP, with its control API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def calls(self, operation: str = "GetCluster") -> int:
        return int(self.http.get("/_emulator/calls").json().get(operation, 0))

    def identifiers(self) -> list[str]:
        found: list[str] = self.http.get("/_emulator/calls").json()["identifiers"]
        return found

    def in_flight(self, operation: str = "GetCluster") -> list[str]:
        """Identifiers of calls the emulator has received and not answered yet."""
        log = self.http.get("/_emulator/calls").json()["log"]
        return [
            entry.get("identifier")
            for entry in log
            if entry["operation"] == operation and "status" not in entry
        ]

    def answered(self, operation: str = "GetCluster") -> int:
        """Calls the emulator has answered, refused ones included."""
        log = self.http.get("/_emulator/calls").json()["log"]
        return sum(1 for entry in log if entry["operation"] == operation and "status" in entry)

    def reset(self) -> None:
        self.http.post("/_emulator/reset").raise_for_status()

    def faults(self, plan: dict[str, Any] | None) -> None:
        if plan is None:
            self.http.delete("/_emulator/faults").raise_for_status()
        else:
            self.http.put("/_emulator/faults", json=plan).raise_for_status()

    def put_cluster(self, cluster: dict[str, Any]) -> None:
        self.http.put(f"/_emulator/clusters/{cluster['name']}", json=cluster).raise_for_status()

    def delete_cluster(self, name: str) -> None:
        self.http.delete(f"/_emulator/clusters/{name}").raise_for_status()


class RedisServer:
    """A redis-server the tests start on a free port, and can stop and start again."""

    def __init__(self, port: int | None = None, *, password: str | None = None) -> None:
        self.port = port or free_port()
        self.password = password
        self.folder = tempfile.mkdtemp(prefix="pcsgw-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.folder,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def _answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
            return reply.startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def redis_url_from_environment() -> str | None:
    """REDIS_URL when a server answers there."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return None
    parsed = httpx.URL(url.replace("redis://", "http://", 1))
    return url if _answers(parsed.port or 6379, parsed.host or "127.0.0.1") else None
