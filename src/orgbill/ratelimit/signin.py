"""Failed sign-ins per email (contract: 10 within 15 minutes lock `POST /auth/token` for that
email, from any IP, until the window passes; a correct password later clears the count).

A sliding window of attempt times per email (an attempt counts as a failure until it
succeeds), keyed by a hash of the email (no addresses in Redis), shared through Redis when
configured and in-process otherwise or while it is down."""

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
_SWEEP_SECONDS = 60

# KEYS[1] attempts (sorted set of times); ARGV[1] now; ARGV[2] window; ARGV[3] max; ARGV[4]
# this attempt's member. Checks and counts in one step: when the window already holds `max`,
# returns the time whose ageing out unlocks the email; else adds this attempt.
_CLAIM_ATTEMPT_SCRIPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local max = tonumber(ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= max then
  local oldest = redis.call('ZRANGE', KEYS[1], -max, -max, 'WITHSCORES')
  return oldest[2]
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], window)
return false
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
        self._next_sweep = 0.0
        self._script = client.register_script(_CLAIM_ATTEMPT_SCRIPT) if client else None

    async def claim_attempt(self, email: str) -> int | None:
        """Counts a sign-in attempt for `email` as a failure until `clear` says it succeeded,
        in the same step as checking the lock (so a burst of guesses sent at once gets no
        more verdicts than the lock allows). Whole seconds until `email` may try again, or
        None when this attempt may go ahead."""
        key, now = email_key(email), self._clock()

        async def shared() -> float | None:
            assert self._script is not None
            member = f"{now}:{secrets.token_hex(4)}"
            found = await self._script(
                keys=[self._prefix + key], args=[now, WINDOW_SECONDS, MAX_FAILURES, member]
            )
            return None if found is None else float(found)

        oldest = await self._run(shared, lambda: self._claim_local(key, now))
        if oldest is None:
            return None
        return max(1, math.ceil(oldest + WINDOW_SECONDS - now))

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

    def _claim_local(self, key: str, now: float) -> float | None:
        if now >= self._next_sweep:
            self._sweep_local(now)
        attempts = [t for t in self._local.get(key, ()) if t > now - WINDOW_SECONDS]
        if len(attempts) >= MAX_FAILURES:
            self._local[key] = attempts
            return attempts[-MAX_FAILURES]
        self._local[key] = [*attempts, now]
        return None

    def _sweep_local(self, now: float) -> None:
        """Forgets emails whose every attempt left the window (at most once a minute): the
        emails tried are the attacker's to choose, so none may be kept past its window."""
        horizon = now - WINDOW_SECONDS
        for key in [key for key, attempts in self._local.items() if attempts[-1] <= horizon]:
            del self._local[key]
        self._next_sweep = now + _SWEEP_SECONDS
