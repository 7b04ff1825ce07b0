"""The same token buckets shared through Redis: one Lua script reads, refills, takes and
writes a bucket atomically, on Redis's clock, so any number of orgbill processes enforce
one limit."""

from __future__ import annotations

import math

from redis.asyncio import Redis

from orgbill.ratelimit.buckets import Bucket, RateDecision

# KEYS[1] bucket; ARGV[1] rate (tokens per second); ARGV[2] capacity; ARGV[3] cost (0: look);
# ARGV[4] milliseconds after which an idle bucket is full again (Redis may then forget it).
_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
if cost > 0 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
end
return {allowed, tostring(tokens)}
"""


class RedisTokenBuckets:
    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_BUCKET_SCRIPT)

    async def hit(self, bucket: Bucket, cost: int = 1) -> RateDecision:
        # Kept a second past the moment it is full again, then Redis forgets it.
        ttl_ms = math.ceil(bucket.capacity / bucket.rate * 1000) + 1000
        allowed, tokens = await self._script(
            keys=[self._prefix + bucket.key], args=[bucket.rate, bucket.capacity, cost, ttl_ms]
        )
        return RateDecision(allowed=bool(int(allowed)), bucket=bucket, tokens=float(tokens))

    async def aclose(self) -> None:
        await self._client.aclose()
