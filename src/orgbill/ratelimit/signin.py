"""Failed sign-ins per email (contract: 10 within 15 minutes lock `POST /auth/token` for that
email, from any IP, until the window passes; a correct password later clears the count).

A sliding window of failure times per email, keyed by a hash of the email (no addresses in
Redis), shared through Redis when configured and in-process otherwise or while it is down."""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis

from orgbill.ratelimit.limiter import RedisFallback

T = TypeVar("T")
MAX_FAILURES = 10
WINDOW_SECONDS = 15 * 60

# KEYS[1] failures (sorted set of failure times); ARGV[1] now; ARGV[2] window; ARGV[3] max.
# Returns the time of the failure whose ageing out unlocks the email, or nothing.
_LOCKED_UNTIL_SCRIPT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
local max = tonumber(ARGV[3])
if redis.call('ZCARD', KEYS[1]) < max then
  return false
end
local oldest = redis.call('ZRANGE', KEYS[1], -max, -max, 'WITHSCORES')
return oldest[2]
"""


def email_key(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


class SignInGuard:
    def __init__(
        self,
        client: Redis | None,
        prefix: str,
        fallback: RedisFallback,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix + "signin:"
        self._fallback = fallback
        self._clock = clock
        self._local: dict[str, list[float]] = {}
        self._script = client.register_script(_LOCKED_UNTIL_SCRIPT) if client else None

    async def retry_after(self, email: str) -> int | None:
        """Whole seconds until `email` may try again; None when it may now."""
        key, now = email_key(email), self._clock()

        async def shared() -> float | None:
            assert self._script is not None
            found = await self._script(
                keys=[self._prefix + key], args=[now, WINDOW_SECONDS, MAX_FAILURES]
            )
            return None if found is None else float(found)

        oldest = await self._run(shared, lambda: self._local_locked_since(key, now))
        if oldest is None:
            return None
        return max(1, math.ceil(oldest + WINDOW_SECONDS - now))

    async def record_failure(self, email: str) -> None:
        key, now = email_key(email), self._clock()

        async def shared() -> None:
            assert self._client is not None
            member = f"{now}:{secrets.token_hex(4)}"
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zadd(self._prefix + key, {member: now})
                pipe.expire(self._prefix + key, WINDOW_SECONDS)
                await pipe.execute()

        def local() -> None:
            self._local.setdefault(key, []).append(now)

        await self._run(shared, local)

    async def clear(self, email: str) -> None:
        key = email_key(email)

        async def shared() -> None:
            assert self._client is not None
            await self._client.delete(self._prefix + key)

        def local() -> None:
            self._local.pop(key, None)

        await self._run(shared, local)

    async def _run(self, shared: Callable[[], Awaitable[T]], local: Callable[[], T]) -> T:
        if self._client is None:
            return local()
        return await self._fallback.run(shared, local)

    def _local_locked_since(self, key: str, now: float) -> float | None:
        failures = [t for t in self._local.get(key, ()) if t > now - WINDOW_SECONDS]
        if failures:
            self._local[key] = failures
        else:
            self._local.pop(key, None)
        return failures[-MAX_FAILURES] if len(failures) >= MAX_FAILURES else None
