"""The server of `serve`: readiness while starting and draining, a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.app import create_app
from gateway.config import Settings
from gateway.http.server import ClosingWhileDraining, GatewayServer
from gateway.http.state import GatewayState
from tests.support.gateway import GatewayFactory, assert_no_leaks
from tests.support.serve import ServeProcess, readyz, wait_until
from tests.support.servers import Emulator, RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
QUERY = "query($id: String!) { cluster(identifier: $id) { name status } }"
SLOW_CLUSTERS = ["demo-active", "demo-creating", "demo-updating", "demo-full"]
PCS_LATENCY_SECONDS = 3.0
DRAIN_SECONDS = 20.0


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


@pytest.fixture
def slow_emulator(emulator: Emulator) -> Iterator[Emulator]:
    emulator.reset()
    emulator.faults({"global": {"latencySeconds": PCS_LATENCY_SECONDS}})
    try:
        yield emulator
    finally:
        emulator.faults(None)
        emulator.reset()


@pytest.mark.slow
@pytest.mark.redis
def test_sigterm_drains_requests_in_flight_then_closes_and_exits_0(
    slow_emulator: Emulator, redis_url: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_PCS": slow_emulator.url,
        "PCS_GATEWAY_CACHE_URL": redis_url,
        "PCS_GATEWAY_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "PCS_GATEWAY_PCS_READ_TIMEOUT_SECONDS": "15",
        "PCS_GATEWAY_REQUEST_DEADLINE_SECONDS": "15",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: (r := readyz(url)) is not None and r.status_code == 200, 60, "ready")
        # A client holding a keep-alive connection from before the signal.
        watcher = httpx.Client(base_url=url, timeout=10)
        assert watcher.get("/readyz").status_code == 200

        def ask(identifier: str) -> tuple[httpx.Response, float]:
            with httpx.Client(base_url=url, timeout=60) as client:
                body = {"query": QUERY, "variables": {"id": identifier}}
                response = client.post("/graphql", json=body)
                return response, time.monotonic()

        with ThreadPoolExecutor(len(SLOW_CLUSTERS)) as pool:
            answers = [pool.submit(ask, identifier) for identifier in SLOW_CLUSTERS]
            # Every request has reached PCS, which takes its time to answer.
            wait_until(lambda: slow_emulator.calls() >= len(SLOW_CLUSTERS), 30, "requests at PCS")
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)

            draining = wait_until(
                lambda: (r := watcher.get("/readyz")).status_code == 503 and r, 10, "draining"
            )
            assert draining.json()["status"] == "draining"
            assert draining.headers["connection"] == "close"
            wait_until(lambda: refuses_connections(port), 10, "new connections refused")

            for identifier, answer in zip(SLOW_CLUSTERS, answers, strict=True):
                response, answered = answer.result(timeout=60)
                assert answered > signalled, "answered before the signal: not in flight"
                assert response.status_code == 200
                body = response.json()
                assert_no_leaks(body)
                assert "errors" not in body, body
                assert body["data"]["cluster"]["name"] == identifier
        watcher.close()
        code = process.wait(timeout=DRAIN_SECONDS + 10)
        stopped_after = time.monotonic() - signalled
        output = process.stdout.read() if process.stdout else ""
        assert code == 0, output
        assert stopped_after < DRAIN_SECONDS, output
        assert "gateway stopped: PCS client and cache closed" in output
        assert "Unclosed" not in output and "Traceback" not in output, output
        assert "cancelling" not in output, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


class HeldStart:
    """The gateway's app with its lifespan start held until `release` is set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.release = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await asyncio.to_thread(self.release.wait, 30)
        await self.app(scope, receive, send)


class GatewayServerThread:
    """GatewayServer on a free port in a thread of its own (no signals: stopped by flag)."""

    def __init__(self, app: ASGIApp, state: GatewayState, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            ClosingWhileDraining(app, state),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
        )
        self.server = GatewayServer(config, state, drain_seconds=settings.drain_seconds)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()))

    def __enter__(self) -> GatewayServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started, 20, "listening")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def test_readyz_says_starting_until_the_parts_are_made(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_PCS", emulator.url)
    settings = Settings()
    app = create_app(settings)
    held = HeldStart(app)
    with GatewayServerThread(held, app.state.gateway, settings) as server:
        # Listening before the lifespan has run: alive, not ready, queries refused plainly.
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        starting = httpx.get(f"{server.url}/readyz")
        assert starting.status_code == 503
        assert starting.json()["status"] == "starting"
        refused = httpx.post(
            f"{server.url}/graphql", json={"query": QUERY, "variables": {"id": "demo-active"}}
        )
        assert refused.status_code == 503
        assert refused.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert_no_leaks(refused.json())

        held.release.set()
        wait_until(lambda: httpx.get(f"{server.url}/readyz").status_code == 200, 30, "ready")
        answer = httpx.post(
            f"{server.url}/graphql", json={"query": QUERY, "variables": {"id": "demo-active"}}
        ).json()
        assert answer["data"]["cluster"]["name"] == "demo-active"
    assert server.server.exit_code == 0
    assert app.state.gateway.draining is True  # type: ignore[attr-defined]


def test_readyz_stays_200_when_pcs_is_down(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens there: every PCS call fails to connect.
    monkeypatch.setenv("AWS_ENDPOINT_URL_PCS", f"http://127.0.0.1:{free_port()}")
    gateway = start_gateway(pcs_max_attempts=1, breaker_failure_threshold=1)
    failed = gateway.query(QUERY, {"id": "demo-active"})
    assert failed["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    ready = gateway.http.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    # The outage is reported, never a reason to take every replica out of the Service.
    assert body["checks"]["pcsBreaker"] == "open"


@pytest.mark.redis
def test_readyz_stays_200_with_the_cache_degraded_when_redis_is_down(
    start_gateway: GatewayFactory,
) -> None:
    redis_server = RedisServer().start()
    try:
        gateway = start_gateway(cache_url=redis_server.url)
        assert gateway.http.get("/readyz").json()["checks"]["cache"] == "ok"
    finally:
        redis_server.stop()
    ready = gateway.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"]["cache"] == "degraded"
    answer = gateway.query(QUERY, {"id": "demo-active"})
    assert answer["data"]["cluster"]["name"] == "demo-active"


def test_a_stop_while_starting_waits_for_the_start_then_closes(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_PCS", emulator.url)
    settings = Settings(drain_seconds=10)
    app = create_app(settings)
    held = HeldStart(app)
    server = GatewayServerThread(held, app.state.gateway, settings)
    with caplog.at_level("INFO", logger="gateway"):
        with server:
            assert httpx.get(f"{server.url}/readyz").json()["status"] == "starting"
            server.server.should_exit = True
            wait_until(lambda: refuses_connections(server.port), 10, "listener closed")
            # The start ends during the drain: what it made is closed, not leaked.
            held.release.set()
        assert server.server.exit_code == 0
    assert "gateway stopped: PCS client and cache closed" in caplog.text


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (b"" if it sent nothing)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


CLIENT_LIMITS = {
    "PCS_GATEWAY_MAX_HEADER_BYTES": "8192",
    "PCS_GATEWAY_HEADER_TIMEOUT_SECONDS": "1",
    "PCS_GATEWAY_BODY_TIMEOUT_SECONDS": "1",
    "PCS_GATEWAY_KEEP_ALIVE_SECONDS": "1",
    "PCS_GATEWAY_API_KEYS": "limits-key-0123456789",
}


@pytest.fixture(scope="module")
def limited_gateway(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    settings = {"AWS_ENDPOINT_URL_PCS": emulator.url, **CLIENT_LIMITS}
    server = ServeProcess(tmp_path_factory.mktemp("limited"), settings)
    try:
        yield server
    finally:
        code, output = server.stop()
        assert code == 0, output
        assert "Traceback" not in output, output


def test_headers_over_the_limit_get_431_and_the_connection_closes(
    limited_gateway: ServeProcess,
) -> None:
    with limited_gateway.connect() as sock:
        big = b"a" * 100_000
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Big: " + big + b"\r\n\r\n")
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"connection: close" in answer.lower()
    # The gateway still answers others.
    assert httpx.get(f"{limited_gateway.url}/healthz").status_code == 200


def test_a_header_that_never_ends_is_cut_off_early(limited_gateway: ServeProcess) -> None:
    sent = 0
    with limited_gateway.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Endless: ")
        chunk = b"a" * 65536
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        answer = read_answer(sock)
    # The server stopped reading long before the client stopped sending.
    assert sent < 16 * 1024 * 1024, sent
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_headers_that_arrive_too_slowly_get_408(limited_gateway: ServeProcess) -> None:
    with limited_gateway.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")  # and nothing more
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_a_body_that_arrives_too_slowly_gets_408(limited_gateway: ServeProcess) -> None:
    with limited_gateway.connect() as sock:
        sock.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n" + b'{"query": "'
        )
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert answer.count(b"HTTP/1.1") == 1, answer


def test_a_connection_that_sends_nothing_is_closed(limited_gateway: ServeProcess) -> None:
    with limited_gateway.connect() as sock:
        assert read_answer(sock) == b""


def test_keep_alive_connections_still_serve_requests(limited_gateway: ServeProcess) -> None:
    headers = {"x-api-key": CLIENT_LIMITS["PCS_GATEWAY_API_KEYS"]}
    with httpx.Client(base_url=limited_gateway.url, headers=headers) as client:
        for _ in range(3):
            answer = client.post(
                "/graphql", json={"query": QUERY, "variables": {"id": "demo-active"}}
            )
            assert answer.json()["data"]["cluster"]["name"] == "demo-active"


@pytest.mark.parametrize("credential", [b"", b"x-api-key: limits-key-0123456789\r\n"])
def test_a_large_body_is_not_read_past_the_body_limit(
    limited_gateway: ServeProcess, credential: bytes
) -> None:
    sent = 0
    with limited_gateway.connect() as sock:
        sock.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            + credential
            + b"Content-Length: 100000000\r\n\r\n"
        )
        chunk = b" " * 65536
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        answer = read_answer(sock)
    # Refused without authentication (401) or for its size (413); the rest never read.
    expected = b"HTTP/1.1 413 " if credential else b"HTTP/1.1 401 "
    assert answer.startswith(expected), answer[:200]
    assert sent < 16 * 1024 * 1024, sent


def test_sigterm_drops_a_request_whose_body_is_still_arriving(
    emulator: Emulator, tmp_path: Path
) -> None:
    # Long read times: only the drain may end this request.
    settings = {
        "AWS_ENDPOINT_URL_PCS": emulator.url,
        "PCS_GATEWAY_DRAIN_SECONDS": "30",
        "PCS_GATEWAY_BODY_TIMEOUT_SECONDS": "120",
        "PCS_GATEWAY_HEADER_TIMEOUT_SECONDS": "120",
    }
    server = ServeProcess(tmp_path, settings)
    try:
        unfinished_body = server.connect()
        unfinished_body.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n" + b'{"query": "'
        )
        unfinished_head = server.connect()
        unfinished_head.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
        time.sleep(0.5)  # both reach the server before the signal
    finally:
        code, output = server.stop()
    with unfinished_body, unfinished_head:
        assert read_answer(unfinished_body).startswith(b"HTTP/1.1 503 ")
        assert read_answer(unfinished_head).startswith(b"HTTP/1.1 503 ")
    assert code == 0, output
    # Nothing was left running for the end of the drain time.
    assert "cancelling" not in output, output
    assert "Traceback" not in output, output


def test_requests_running_when_the_drain_time_ends_get_shutting_down(
    slow_emulator: Emulator, tmp_path: Path
) -> None:
    settings = {
        "AWS_ENDPOINT_URL_PCS": slow_emulator.url,
        "PCS_GATEWAY_DRAIN_SECONDS": "0.5",
        "PCS_GATEWAY_PCS_READ_TIMEOUT_SECONDS": "15",
        "PCS_GATEWAY_REQUEST_DEADLINE_SECONDS": "15",
    }
    server = ServeProcess(tmp_path, settings)
    try:
        with ThreadPoolExecutor(1) as pool:
            body = {"query": QUERY, "variables": {"id": "demo-active"}}
            asked = pool.submit(
                httpx.post,
                f"{server.url}/graphql",
                json=body,
                headers={"accept": "application/graphql-response+json"},
                timeout=60,
            )
            wait_until(lambda: slow_emulator.calls() >= 1, 30, "request at PCS")
            code, output = server.stop()
            response = asked.result(timeout=60)
    finally:
        if server.process.poll() is None:
            server.stop()
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert_no_leaks(answer)
    assert answer["errors"][0]["extensions"]["code"] == "SHUTTING_DOWN"
    assert "data" not in answer
    assert code == 0, output
    assert "cancelling 1 request(s)" in output, output
    assert "Traceback" not in output and "CancelledError" not in output, output
