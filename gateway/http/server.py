"""The HTTP server of `serve`: uvicorn, answering while the gateway starts, draining on SIGTERM.

Start: the socket listens before the lifespan makes the long-lived parts, so `/healthz`
answers at once and `/readyz` says 503 `starting` until they are made.
Stop (SIGTERM or SIGINT): `/readyz` turns 503 `draining`, the listening socket closes, every
response from then on carries `Connection: close`, requests in flight get up to the drain
time to finish, then the lifespan closes the PCS client and the cache and `run` returns 0.
Requests still being received when the drain starts are dropped; those still running when
the drain time ends get a GraphQL error `SHUTTING_DOWN` with HTTP 503.
Slow and oversized clients: `ConnectionLimits` bound the headers' size and read time, the
body's read time and idle keep-alive, per connection (`LimitedHttpProtocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import orjson
import uvicorn
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.http.state import GatewayState

log = logging.getLogger(__name__)

#: The exit code when the lifespan fails to make the long-lived parts (uvicorn's own).
STARTUP_FAILURE = 3
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: How long requests cancelled at the end of the drain get to send their answer.
CANCELLED_ANSWER_SECONDS = 2.0


#: The answer to a request still running when the drain time ends.
SHUTTING_DOWN = orjson.dumps(
    {
        "errors": [
            {
                "message": "The gateway is shutting down; try again.",
                "extensions": {"code": "SHUTTING_DOWN"},
            }
        ]
    }
)


class ClosingWhileDraining:
    """ASGI layer: while draining, each response tells its client to close the connection.

    A request cancelled when the drain time ends is answered 503 `SHUTTING_DOWN`, and a
    client gone before its body arrived ends its request quietly: neither is a server error.
    """

    def __init__(self, app: ASGIApp, state: GatewayState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        started = False

        async def send_closing(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if state.draining:
                    headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                    headers.append((b"connection", b"close"))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_closing)
        except ClientDisconnect:
            return
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or not task.cancelling():
                raise
            # Only a stopping server cancels a request's task (at the end of the drain, or
            # uvicorn's graceful timeout with --workers): answered, not a crash.
            task.uncancel()
            if not started:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", b"%d" % len(SHUTTING_DOWN)),
                            (b"connection", b"close"),
                            (b"retry-after", b"1"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": SHUTTING_DOWN})


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client connection may hold: header size, read times, idle time."""

    max_header_bytes: int = 32_768
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keep_alive_seconds: float = 5.0


def _plain_answer(status: int, reason: str, text: str) -> bytes:
    body = text.encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s"
        % (status, reason.encode(), len(body), body)
    )


HEADERS_TOO_LARGE = _plain_answer(431, "Request Header Fields Too Large", "Headers too large.")
REQUEST_TIMEOUT = _plain_answer(408, "Request Timeout", "Request not received in time.")
UNAVAILABLE = _plain_answer(503, "Service Unavailable", "The gateway is shutting down.")


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on slow and oversized clients.

    httptools buffers headers without limit and uvicorn arms no timer until a first response;
    here a connection is closed when idle, its headers over size or late (431, 408), or its
    body late (408).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.timeout_keep_alive = limits.keep_alive_seconds  # type: ignore[assignment]
        self.head_bytes = 0
        self.reading_head = False
        self.reading_body = False
        self.refused = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.keep_alive_seconds, self._idle_too_long)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if not self.reading_head and not self.reading_body:
            self._disarm()  # the idle timer: a request begins
        super().data_received(data)
        if self.reading_head and not self.transport.is_closing():
            # httptools holds a header's bytes until it ends: count them as they come.
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_header_bytes:
                self._refuse(HEADERS_TOO_LARGE)

    def on_message_begin(self) -> None:
        if self.refused:
            return
        super().on_message_begin()
        self.reading_head = True
        self.head_bytes = 0
        self._arm(self.limits.header_timeout_seconds, self._late)

    def on_headers_complete(self) -> None:
        if self.refused:
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_header_bytes:
            self._refuse(HEADERS_TOO_LARGE)
            return
        self.reading_head = False
        self.reading_body = True
        self._arm(self.limits.body_timeout_seconds, self._late)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.refused:
            return
        self.reading_body = False
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.reading_body and not self.transport.is_closing():
            # Answered before its body came (401, 413...): the rest is not read, nor drained.
            self.reading_body = False
            self.refused = True
            self._disarm()
            self.transport.close()

    def handle_websocket_upgrade(self) -> None:
        self.reading_head = self.reading_body = False
        self._disarm()
        super().handle_websocket_upgrade()

    def shutdown(self) -> None:
        self.drop_unfinished()
        super().shutdown()

    def drop_unfinished(self) -> None:
        """At drain: a request whose headers or body are still arriving gets 503 and closes."""
        if self.reading_head or self.reading_body:
            self._refuse(UNAVAILABLE)

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self.timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _idle_too_long(self) -> None:
        if not self.reading_head and not self.reading_body:
            self.transport.close()

    def _late(self) -> None:
        if self.reading_head or self.reading_body:
            self._refuse(REQUEST_TIMEOUT)

    def _refuse(self, answer: bytes) -> None:
        """Answer `answer` unless a response is under way, then close the connection."""
        self.reading_head = self.reading_body = False
        self.refused = True  # what the parser still holds is dropped
        self._disarm()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(answer)
        if cycle is not None and not cycle.response_complete:
            # The request's app reads a disconnect and its answer goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def limited_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The protocol uvicorn makes per connection, picklable for `--workers` processes."""
    made: type[asyncio.Protocol] = functools.partial(  # type: ignore[assignment]
        LimitedHttpProtocol, limits=limits
    )
    return made


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
        # A request still arriving would hold the drain as long as its client likes.
        for connection in list(self.server_state.connections):
            if isinstance(connection, LimitedHttpProtocol):
                connection.drop_unfinished()
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
            cancelled = list(self.server_state.tasks)
            for task in cancelled:
                task.cancel()
            # Each answers SHUTTING_DOWN (ClosingWhileDraining) before the parts close.
            await asyncio.wait(cancelled, timeout=CANCELLED_ANSWER_SECONDS)
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


def serve(
    app: ASGIApp,
    state: GatewayState,
    *,
    drain_seconds: float,
    limits: ConnectionLimits,
    **options: Any,
) -> int:
    """Serve `app` until SIGTERM or SIGINT; the process's exit code.

    `options` are uvicorn's (host, port, logging...).
    """
    config = uvicorn.Config(
        ClosingWhileDraining(app, state),
        http=limited_protocol(limits),
        **options,
    )
    server = GatewayServer(config, state, drain_seconds=drain_seconds)
    server.run()
    return server.exit_code
