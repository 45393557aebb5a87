"""The Redis connection that coordination uses, apart from the cache's own."""

from __future__ import annotations

from redis.asyncio import Redis

from gateway.config import Settings


def coordination_url(settings: Settings) -> str | None:
    """The Redis URL replicas coordinate through; None: each replica works alone."""
    if settings.coordination_url is not None:
        return settings.coordination_url or None
    if settings.cache_url.startswith(("redis://", "rediss://")):
        return settings.cache_url
    return None


def connect(url: str, settings: Settings) -> Redis:
    """A Redis client with short timeouts: a slow Redis reads as unreachable, never a hang."""
    return Redis.from_url(
        url,
        socket_timeout=settings.cache_timeout_seconds,
        socket_connect_timeout=settings.cache_timeout_seconds,
        max_connections=settings.cache_max_connections,
        health_check_interval=30,
    )
