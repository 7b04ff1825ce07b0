"""The same token buckets shared through Redis: one Lua script reads, refills, takes and
writes a bucket atomically, on Redis's clock, so any number of orgbill processes enforce
one limit."""

from __future__ import annotations

from redis.asyncio import Redis

from orgbill.ratelimit.buckets import RateDecision

# KEYS[1] bucket; ARGV[1] rate (= capacity, tokens per second); ARGV[2] cost (0: just look).
_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = rate
  at = now
end
tokens = math.min(rate, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
if cost > 0 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
  -- Full again after one second; keep it a little longer, then let Redis forget it.
  redis.call('PEXPIRE', KEYS[1], 2000)
end
return {allowed, tostring(tokens)}
"""


class RedisTokenBuckets:
    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_BUCKET_SCRIPT)

    async def hit(self, key: str, rate: int, cost: int = 1) -> RateDecision:
        allowed, tokens = await self._script(keys=[self._prefix + key], args=[rate, cost])
        return RateDecision(
            allowed=bool(int(allowed)), limit=rate, tokens=float(tokens), rate=float(rate)
        )

    async def aclose(self) -> None:
        await self._client.aclose()
