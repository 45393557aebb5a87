"""A lease in Redis: one holder at a time, taken with SET NX PX, renewed, released by its owner.

Renewal and release are compare-and-set Lua scripts, so a holder whose lease has passed to
another can neither extend nor delete the new holder's lease.
"""

from __future__ import annotations

import os
import secrets
import socket

from redis.asyncio import Redis

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def owner_token() -> str:
    """This process's owner token: host and pid (who leads a poll, readable in Redis), and a
    random part so a restarted process with the same pid is another owner."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Leases:
    """Makes leases on one Redis; each process has its own owner token."""

    def __init__(self, redis: Redis, *, owner: str | None = None) -> None:
        self.redis = redis
        self.owner = owner or owner_token()
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        #: Leases this process holds now, by key; read by the metrics.
        self.held: set[str] = set()

    def lease(self, key: str, ttl_seconds: float) -> Lease:
        """A lease on `key` lasting `ttl_seconds` unless renewed."""
        return Lease(self, key, ttl_seconds)


class Lease:
    """One lease; its methods raise redis' ConnectionError or TimeoutError when Redis fails."""

    def __init__(self, leases: Leases, key: str, ttl_seconds: float) -> None:
        self._leases = leases
        self.key = key
        self.ttl_ms = max(1, int(ttl_seconds * 1000))

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        leases = self._leases
        taken = await leases.redis.set(self.key, leases.owner, nx=True, px=self.ttl_ms)
        if taken:
            leases.held.add(self.key)
        return bool(taken)

    async def hold(self) -> bool:
        """Renew the lease when held, else try to take it: whether this process holds it now."""
        leases = self._leases
        if self.key in leases.held:
            renewed = await leases._renew(keys=[self.key], args=[leases.owner, self.ttl_ms])
            if renewed:
                return True
            leases.held.discard(self.key)
        return await self.acquire()

    async def release(self) -> None:
        """Give the lease up, if this process still holds it."""
        leases = self._leases
        leases.held.discard(self.key)
        await leases._release(keys=[self.key], args=[leases.owner])

    async def taken(self) -> bool:
        """Whether anyone holds the lease now."""
        return bool(await self._leases.redis.exists(self.key))
