"""The deployment's PCS rate budget: one token bucket in Redis, taken in one atomic script."""

from __future__ import annotations

from redis.asyncio import Redis

# The bucket refills by Redis' own clock, so replicas with skewed clocks share it fairly.
# Numbers go back as strings: Redis turns a Lua number into an integer.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens < 1 then wait = (1 - tokens) / rate end
if wait > max_wait then return tostring(-wait) end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate + max_wait) * 1000) + 1000)
return tostring(wait)
"""


class RedisTokens:
    """Reserves tokens of a bucket shared by every replica (see `SharedTokens`)."""

    def __init__(
        self, redis: Redis, *, key: str, rate: float, burst: float, max_wait: float
    ) -> None:
        self._key = key
        self._args = [repr(rate), repr(burst), repr(max_wait)]
        self._take = redis.register_script(_TAKE)

    async def reserve(self) -> float:
        """Seconds to wait before the call a token was reserved for; negative: refused, due then.

        Raises redis' errors when Redis fails.
        """
        raw = await self._take(keys=[self._key], args=self._args)
        return float(raw.decode() if isinstance(raw, bytes) else raw)
