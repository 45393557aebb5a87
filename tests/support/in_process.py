"""An ASGI app served in this process without a socket: its lifespan run, httpx in front.

The app runs on its own event loop in a thread (as under uvicorn), so synchronous tests
call it through `httpx.Client` and asynchronous ones through `httpx.ASGITransport`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


class AppThread:
    """An ASGI app on an event loop in a thread: lifespan started on `start`, ended on `stop`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        # Made on the app's loop when it starts: what the app receives, and what it sends.
        self._messages: asyncio.Queue[dict[str, Any]] | None = None
        self._replies: asyncio.Queue[dict[str, Any]] | None = None
        self._lifespan: asyncio.Future[None] | None = None

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the app's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> AppThread:
        self.thread.start()
        self.run(self._start())
        return self

    def stop(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=15)
            self.loop.close()

    async def _start(self) -> None:
        self._messages = asyncio.Queue()
        self._replies = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._lifespan = asyncio.ensure_future(
            self.app(scope, self._messages.get, self._replies.put)
        )
        await self._expect("lifespan.startup")

    async def _stop(self) -> None:
        await self._expect("lifespan.shutdown")
        assert self._lifespan is not None
        await self._lifespan

    async def _expect(self, event: str) -> None:
        assert self._messages is not None and self._replies is not None
        await self._messages.put({"type": event})
        reply = await self._replies.get()
        if reply["type"] != f"{event}.complete":
            raise RuntimeError(f"{event} failed: {reply.get('message', reply['type'])}")


class _Chunks(httpx.AsyncByteStream):
    """A request body read from a synchronous stream, given to the app chunk by chunk."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


class AppTransport(httpx.BaseTransport):
    """A synchronous httpx transport that calls the app on its own loop."""

    def __init__(self, app_thread: AppThread) -> None:
        self.app_thread = app_thread
        self.asgi = httpx.ASGITransport(app=app_thread.app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            # A generator body: the same chunks, the same headers (chunked, no length).
            request.stream = _Chunks(list(request.stream))

        async def send() -> httpx.Response:
            response = await self.asgi.handle_async_request(request)
            # Raw bytes: the client decodes a gzip body itself, as over a socket.
            content = b"".join([chunk async for chunk in response.aiter_raw()])
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                content=content,
                extensions=response.extensions,
            )

        return self.app_thread.run(send())
