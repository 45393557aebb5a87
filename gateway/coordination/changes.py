"""Change events between replicas: Redis pub/sub on one pattern, routed to local listeners."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Listener = Callable[[bytes], None]


class ChangeChannels:
    """Publishes events on `prefix + name` and hands each received one to its listener."""

    def __init__(self, redis: Redis, *, prefix: str, retry_seconds: float = 1.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retry_seconds = retry_seconds
        self.listeners: dict[str, Listener] = {}
        #: Whether the subscription to other replicas' events is up.
        self.connected = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Listen for events until `close`."""
        self._task = asyncio.create_task(self._listen_forever())

    async def close(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def publish(self, name: str, event: bytes) -> bool:
        """Send an event to every replica (this one included); False when Redis failed."""
        try:
            await self.redis.publish(self.prefix + name, event)
        except (RedisError, OSError):
            return False
        return True

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                if self.connected:
                    log.warning("change events from other replicas interrupted: %s", exc)
            self.connected = False
            await asyncio.sleep(self.retry_seconds)

    async def _listen(self) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(self.prefix + "*")
            self.connected = True
            while True:
                message = await pubsub.get_message(timeout=30.0)
                if message is None or message.get("type") != "pmessage":
                    continue
                channel = message["channel"]
                name = (channel.decode() if isinstance(channel, bytes) else channel)[
                    len(self.prefix) :
                ]
                listener = self.listeners.get(name)
                if listener is not None:
                    listener(message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
