"""The HTTP server of `serve`: uvicorn, answering while the gateway starts, draining on SIGTERM.

Start: the socket listens before the lifespan makes the long-lived parts, so `/healthz`
answers at once and `/readyz` says 503 `starting` until they are made.
Stop (SIGTERM or SIGINT): `/readyz` turns 503 `draining`, the listening socket closes, every
response from then on carries `Connection: close`, requests in flight get up to the drain
time to finish, then the lifespan closes the PCS client and the cache and `run` returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.http.state import GatewayState

log = logging.getLogger(__name__)

#: The exit code when the lifespan fails to make the long-lived parts (uvicorn's own).
STARTUP_FAILURE = 3
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ClosingWhileDraining:
    """ASGI layer: while draining, each response tells its client to close the connection."""

    def __init__(self, app: ASGIApp, state: GatewayState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and state.draining:
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_closing)


class _LifespanLater:
    """Stands in for uvicorn's lifespan while the socket opens; the real one starts after."""

    def __init__(self, lifespan: Any) -> None:
        self.state = lifespan.state
        self.should_exit = False

    async def startup(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


class GatewayServer(uvicorn.Server):
    """uvicorn with the gateway's start (listen first) and stop (drain, then close, exit 0)."""

    def __init__(self, config: uvicorn.Config, state: GatewayState, *, drain_seconds: float):
        super().__init__(config)
        self.state = state
        self.drain_seconds = drain_seconds
        self.exit_code = 0
        self._starting: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        lifespan = self.lifespan
        self.lifespan = _LifespanLater(lifespan)
        try:
            await super().startup(sockets)
        finally:
            self.lifespan = lifespan
        if self.started:
            self._starting = asyncio.create_task(self._start_gateway())

    async def _start_gateway(self) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            self.exit_code = STARTUP_FAILURE
            self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.state.draining = True
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn raises the signal again once stopped; a gateway that drained exits 0 instead.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.state.draining = True
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        deadline = loop.time() + self.drain_seconds
        log.info(
            "draining: no new connections; %d request(s) in flight get up to %gs",
            len(self.server_state.tasks),
            self.drain_seconds,
        )
        # Subscriptions complete and their sockets close (1001) before the wait for the rest.
        for drain in self.state.on_drain:
            try:
                await asyncio.wait_for(drain(), timeout=max(0.1, deadline - loop.time()))
            except Exception:
                log.exception("a drain step failed")
        # Open keep-alive connections may still ask (and are told to close); in flight first.
        await self._finish_requests(deadline)
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await self._finish_requests(deadline)
        if self.server_state.tasks:
            log.warning(
                "drain time over: cancelling %d request(s) still running",
                len(self.server_state.tasks),
            )
            for task in list(self.server_state.tasks):
                task.cancel()
        started = await self._wait_started(max(0.0, deadline - loop.time()))
        if started and not self.force_exit:
            await self.lifespan.shutdown()
            log.info("gateway stopped: PCS client and cache closed")

    async def _finish_requests(self, deadline: float) -> None:
        """Wait for the requests running now, and those that start meanwhile, until `deadline`."""
        loop = asyncio.get_running_loop()
        while self.server_state.tasks and not self.force_exit and loop.time() < deadline:
            await asyncio.wait(set(self.server_state.tasks), timeout=deadline - loop.time())

    async def _wait_started(self, within: float) -> bool:
        """Whether the lifespan made the parts; a start still running gets `within` s to end."""
        if self._starting is None:
            return False
        if not self._starting.done():
            # A stop during start: the parts being made are closed once they are.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._starting), timeout=max(within, 1.0))
        if not self._starting.done():
            self._starting.cancel()
            return False
        if self._starting.cancelled() or self._starting.exception() is not None:
            return False
        return self.exit_code == 0


def serve(app: ASGIApp, state: GatewayState, *, drain_seconds: float, **options: Any) -> int:
    """Serve `app` until SIGTERM or SIGINT; the process's exit code.

    `options` are uvicorn's (host, port, logging...).
    """
    config = uvicorn.Config(ClosingWhileDraining(app, state), **options)
    server = GatewayServer(config, state, drain_seconds=drain_seconds)
    server.run()
    return server.exit_code
