"""The rate limiter the app uses: Redis when configured, the in-process buckets otherwise,
and the in-process buckets again whenever Redis cannot be reached (serving beats limiting
exactly; the outage is logged, and Redis is retried after a short pause)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from orgbill.config import Settings
from orgbill.ratelimit.buckets import Bucket, LocalTokenBuckets, RateDecision
from orgbill.ratelimit.redis_buckets import RedisTokenBuckets

logger = logging.getLogger("orgbill.ratelimit")
# How long to serve from the in-process state before trying Redis again.
REDIS_RETRY_SECONDS = 5.0
# A bucket check is on every request: a slow Redis must not make every request slow.
_REDIS_TIMEOUT_SECONDS = 0.25

T = TypeVar("T")


def redis_client(settings: Settings) -> Redis | None:
    if not settings.redis_url:
        return None
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
        socket_timeout=_REDIS_TIMEOUT_SECONDS,
    )


class RedisFallback:
    """Runs a call through Redis, or its in-process twin while Redis is unreachable."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._down_until = 0.0

    @property
    def using_redis(self) -> bool:
        return self._enabled and time.monotonic() >= self._down_until

    async def run(self, shared: Callable[[], Awaitable[T]], local: Callable[[], T]) -> T:
        if self.using_redis:
            try:
                result = await shared()
            except (RedisError, OSError):
                self._down_until = time.monotonic() + REDIS_RETRY_SECONDS
                logger.warning(
                    "redis unreachable; rate limiting in-process for now",
                    extra={"retryInSeconds": REDIS_RETRY_SECONDS},
                    exc_info=True,
                )
            else:
                if self._down_until:
                    self._down_until = 0.0
                    logger.warning("redis reachable again; rate limits are shared")
                return result
        return local()


class RateLimiter:
    def __init__(
        self,
        local: LocalTokenBuckets,
        shared: RedisTokenBuckets | None,
        fallback: RedisFallback | None = None,
    ) -> None:
        # Public so a test can hand it buckets on a clock of its own.
        self.local_buckets = local
        self._shared = shared
        self._fallback = fallback or RedisFallback(shared is not None)

    @classmethod
    def build(
        cls, client: Redis | None, settings: Settings, fallback: RedisFallback
    ) -> RateLimiter:
        shared = RedisTokenBuckets(client, settings.rate_limit_key_prefix) if client else None
        return cls(LocalTokenBuckets(), shared, fallback)

    async def hit(self, bucket: Bucket, cost: int = 1) -> RateDecision:
        shared = self._shared
        if shared is None:
            return self.local_buckets.hit(bucket, cost)
        return await self._fallback.run(
            lambda: shared.hit(bucket, cost), lambda: self.local_buckets.hit(bucket, cost)
        )
